from django.contrib import admin

from emporium.wishlists.models import Wishlist, WishlistItem


class WishlistItemInline(admin.TabularInline[WishlistItem, Wishlist]):
    model = WishlistItem
    raw_id_fields = ["product"]
    extra = 0


@admin.register(Wishlist)
class WishlistAdmin(admin.ModelAdmin[Wishlist]):
    list_display = ["id", "user", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]
    list_select_related = ["user"]
    inlines = [WishlistItemInline]


@admin.register(WishlistItem)
class WishlistItemAdmin(admin.ModelAdmin[WishlistItem]):
    list_display = ["id", "wishlist", "product", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["wishlist__user__username", "product__name", "product__sku"]
    raw_id_fields = ["wishlist", "product"]
    list_select_related = ["wishlist", "product"]
