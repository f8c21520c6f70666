import re
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from emporium.catalog.models import Product
from emporium.core.encryption import BlindIndexField, EncryptedTextField, row_uuid_field
from emporium.core.models import TimeStampedModel


class OrderStatus(models.TextChoices):
    PENDING_PAYMENT = "pending_payment", "Pending payment"
    PAID = "paid", "Paid"
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    CANCELLED = "cancelled", "Cancelled"
    PAYMENT_FAILED = "payment_failed", "Payment failed"


_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")
_PHONE = re.compile(r"\+?[0-9]{4,20}")


def phone_normalized(text: str) -> str | None:
    """The phone number as stored and looked up: digits and a leading +, or None if not one.

    Writes and lookups both pass through here, so "+49 (30) 1234-56" finds "+4930123456".
    """
    digits = _PHONE_PUNCTUATION.sub("", text)
    return digits if _PHONE.fullmatch(digits) else None


class Order(TimeStampedModel):
    # Orders are financial records: a user who has ordered cannot be deleted.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    order_status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING_PAYMENT
    )
    total_amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    # Claimed by the e-mail task before sending, so a re-run never sends twice.
    confirmation_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Sealed at rest (docs/security.md); NULL when the checkout gave none. The
    # phone is found by equality through its blind index, never by its ciphertext.
    row_uuid = row_uuid_field()
    shipping_address = EncryptedTextField(null=True, blank=True)
    phone = EncryptedTextField(null=True, blank=True)
    phone_index = BlindIndexField(source="phone")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(total_amount__gte=0), name="order_total_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(order_status__in=OrderStatus.values), name="order_status_known"
            ),
        ]
        indexes = [
            models.Index(fields=["user", "created_at", "id"], name="order_user_created_idx"),
            models.Index(fields=["order_status", "created_at"], name="order_status_created_idx"),
            models.Index(fields=["created_at", "id"], name="order_created_id_idx"),
        ]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.order_status})"


class OrderItem(TimeStampedModel):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    # A product that was ever ordered stays, so the order keeps its meaning.
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_items")
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2)  # unit price when ordered
    product_name = models.CharField(max_length=200, default="")  # name when ordered

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "product"], name="order_item_one_per_product"),
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="order_item_quantity_positive"
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="order_item_price_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id} @ {self.price}"

    @property
    def line_total(self) -> Decimal:
        return self.price * self.quantity


class OrderStatusChange(models.Model):
    """One recorded transition of an order's status: who, when, from, to."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=20, choices=OrderStatus.choices)
    to_status = models.CharField(max_length=20, choices=OrderStatus.choices)
    # Null when the system made the change (payment task, expiry job).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["order", "created_at"], name="order_change_order_idx")]

    def __str__(self) -> str:
        return f"order {self.order_id}: {self.from_status} -> {self.to_status}"
