from django.contrib import admin

from emporium.carts.models import CartItem, ShoppingCart


class CartItemInline(admin.TabularInline[CartItem, ShoppingCart]):
    model = CartItem
    raw_id_fields = ["product"]
    extra = 0


@admin.register(ShoppingCart)
class ShoppingCartAdmin(admin.ModelAdmin[ShoppingCart]):
    list_display = ["id", "user", "created_at", "updated_at"]
    list_filter = ["created_at"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]
    list_select_related = ["user"]
    inlines = [CartItemInline]


@admin.register(CartItem)
class CartItemAdmin(admin.ModelAdmin[CartItem]):
    list_display = ["id", "cart", "product", "quantity", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["cart__user__username", "product__name", "product__sku"]
    raw_id_fields = ["cart", "product"]
    list_select_related = ["cart", "product"]
