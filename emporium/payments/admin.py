from django.contrib import admin

from emporium.payments.models import Payment


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ["id", "order", "payment_method", "amount", "status", "created_at"]
    list_filter = ["status", "payment_method", "created_at"]
    search_fields = ["id", "order__id", "order__user__username", "provider_reference"]
    raw_id_fields = ["order"]
    list_select_related = ["order"]
    readonly_fields = [
        "order",
        "payment_method",
        "amount",
        "status",
        "provider_reference",
        "failure_reason",
        "created_at",
        "updated_at",
    ]
