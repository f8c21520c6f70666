from django.contrib import admin
from django.http import HttpRequest

from emporium.payments.models import Payment, PaymentDiscrepancy

# What the webhook recorded of a mismatch: staff read it, and only tick "resolved".
_DISCREPANCY_RECORDED: tuple[str, ...] = (
    "kind",
    "provider_reference",
    "expected_amount",
    "expected_currency",
    "reported_amount",
    "reported_currency",
)


class PaymentDiscrepancyInline(admin.TabularInline[PaymentDiscrepancy, Payment]):
    model = PaymentDiscrepancy
    extra = 0
    can_delete = False
    fields = (*_DISCREPANCY_RECORDED, "resolved", "created_at")
    readonly_fields = (*_DISCREPANCY_RECORDED, "created_at")

    def has_add_permission(self, request: HttpRequest, obj: Payment | None = None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin[Payment]):
    list_display = ["id", "order", "payment_method", "amount", "status", "created_at"]
    list_filter = ["status", "payment_method", "created_at", "discrepancies__resolved"]
    search_fields = ["id", "order__id", "order__user__username", "provider_reference"]
    raw_id_fields = ["order"]
    list_select_related = ["order"]
    inlines = [PaymentDiscrepancyInline]
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


@admin.register(PaymentDiscrepancy)
class PaymentDiscrepancyAdmin(admin.ModelAdmin[PaymentDiscrepancy]):
    """Charges the provider reported that did not match their payment; staff mark them
    resolved once they have settled them with the provider."""

    list_display = [
        "id",
        "payment",
        "kind",
        "expected_amount",
        "expected_currency",
        "reported_amount",
        "reported_currency",
        "resolved",
        "created_at",
    ]
    list_filter = ["resolved", "kind", "created_at"]
    list_editable = ["resolved"]
    search_fields = ["payment__id", "payment__order__id", "provider_reference"]
    list_select_related = ["payment"]
    readonly_fields = ["payment", *_DISCREPANCY_RECORDED, "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
