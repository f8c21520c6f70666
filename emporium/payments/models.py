from decimal import Decimal

from django.db import models
from django.db.models import Q

from emporium.core.encryption import EncryptedTextField, row_uuid_field
from emporium.core.models import TimeStampedModel
from emporium.orders.models import Order


class PaymentMethod(models.TextChoices):
    CARD = "card", "Card"
    PAYPAL = "paypal", "PayPal"
    BANK_TRANSFER = "bank_transfer", "Bank transfer"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"


class Payment(TimeStampedModel):
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="payments")
    payment_method = models.CharField(max_length=20, choices=PaymentMethod.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    status = models.CharField(
        max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    # A token from the provider's card vault (never a card number), used to charge;
    # sealed at rest, bound to the row through row_uuid (docs/security.md).
    row_uuid = row_uuid_field()
    provider_token = EncryptedTextField(blank=True, default="")
    provider_reference = models.CharField(max_length=128, blank=True, default="")
    refund_reference = models.CharField(max_length=128, blank=True, default="")
    failure_reason = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(status__in=PaymentStatus.values), name="payment_status_known"
            ),
            models.CheckConstraint(
                condition=Q(payment_method__in=PaymentMethod.values), name="payment_method_known"
            ),
            # At most one live payment per order: a second charge cannot even be recorded.
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(status__in=["pending", "succeeded"]),
                name="payment_one_live_per_order",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="payment_status_created_idx"),
            models.Index(fields=["created_at", "id"], name="payment_created_id_idx"),
        ]

    def __str__(self) -> str:
        return f"payment {self.pk} of order {self.order_id} ({self.status})"


class DiscrepancyKind(models.TextChoices):
    AMOUNT = "amount", "Amount differs"
    CURRENCY = "currency", "Currency differs"
    AMOUNT_AND_CURRENCY = "amount_and_currency", "Amount and currency differ"


class PaymentDiscrepancy(TimeStampedModel):
    """A provider report of a charge that does not match the payment it names.

    The report is refused (the payment and its order stay as they were) and
    kept here for staff, who settle it by hand with the provider. The reported
    values are kept as the provider sent them, even when they are not a number.
    """

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="discrepancies")
    kind = models.CharField(max_length=32, choices=DiscrepancyKind.choices)
    provider_reference = models.CharField(max_length=128, blank=True, default="")
    expected_amount = models.DecimalField(max_digits=14, decimal_places=2)
    expected_currency = models.CharField(max_length=3)
    reported_amount = models.CharField(max_length=64)
    reported_currency = models.CharField(max_length=16)
    resolved = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=DiscrepancyKind.values), name="payment_discrepancy_kind_known"
            ),
            # The provider's retries of one report record it once.
            models.UniqueConstraint(
                fields=["payment", "provider_reference", "reported_amount", "reported_currency"],
                name="payment_discrepancy_once_per_report",
            ),
        ]
        indexes = [
            models.Index(fields=["resolved", "created_at"], name="payment_discr_resolved_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} discrepancy on payment {self.payment_id}"
