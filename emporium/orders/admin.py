from django.contrib import admin

from emporium.orders.models import Order, OrderItem, OrderStatusChange


class OrderItemInline(admin.TabularInline[OrderItem, Order]):
    model = OrderItem
    raw_id_fields = ["product"]
    readonly_fields = ["product", "quantity", "price"]
    extra = 0
    can_delete = False


class OrderStatusChangeInline(admin.TabularInline[OrderStatusChange, Order]):
    model = OrderStatusChange
    fields = ["created_at", "from_status", "to_status", "actor", "reason"]
    readonly_fields = ["created_at", "from_status", "to_status", "actor", "reason"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin[Order]):
    list_display = ["id", "user", "order_status", "total_amount", "created_at"]
    list_filter = ["order_status", "created_at"]
    search_fields = ["id", "user__username", "user__email"]
    raw_id_fields = ["user"]
    list_select_related = ["user"]
    # Status moves only through the order workflow, so every change is recorded.
    readonly_fields = ["user", "order_status", "total_amount", "created_at", "updated_at"]
    inlines = [OrderItemInline, OrderStatusChangeInline]
    date_hierarchy = "created_at"


@admin.register(OrderItem)
class OrderItemAdmin(admin.ModelAdmin[OrderItem]):
    list_display = ["id", "order", "product", "quantity", "price"]
    list_filter = ["created_at"]
    search_fields = ["order__id", "product__name", "product__sku"]
    raw_id_fields = ["order", "product"]
    list_select_related = ["order", "product"]
    readonly_fields = ["order", "product", "quantity", "price", "created_at", "updated_at"]


@admin.register(OrderStatusChange)
class OrderStatusChangeAdmin(admin.ModelAdmin[OrderStatusChange]):
    list_display = ["order", "from_status", "to_status", "actor", "created_at"]
    list_filter = ["to_status", "from_status", "created_at"]
    search_fields = ["order__id", "actor__username", "reason"]
    raw_id_fields = ["order", "actor"]
    list_select_related = ["order", "actor"]
    readonly_fields = ["order", "from_status", "to_status", "actor", "reason", "created_at"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
