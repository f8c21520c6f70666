"""What the real-time streams keep so a client can catch up over REST.

Order events are the order's status changes (``orders.OrderStatusChange``,
placement included). Notifications are kept here until the inbox app of a
later issue takes them over; their ids order the stream like the changes' ids.
"""

from django.conf import settings
from django.db import models


class NotificationKind(models.TextChoices):
    PAYMENT_SUCCEEDED = "payment_succeeded", "Payment succeeded"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    ORDER_SHIPPED = "order_shipped", "Order shipped"
    ORDER_DELIVERED = "order_delivered", "Order delivered"
    ORDER_CANCELLED = "order_cancelled", "Order cancelled"


class Notification(models.Model):
    """One message for one user, pushed on /ws/notifications/ after commit."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=40, choices=NotificationKind.choices)
    title = models.CharField(max_length=200)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["user", "id"], name="notification_user_id_idx")]

    def __str__(self) -> str:
        return f"notification {self.pk} for user {self.user_id}: {self.kind}"
