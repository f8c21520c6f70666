"""What the real-time streams keep so a client can catch up over REST.

``OrderEvent`` is a table whose ids order the stream: an order placed, then
every status change, one row each, keyed by the owner so a catch-up read is
one index range. ``orders.OrderStatusChange`` stays the audit history of
transitions; placement is not a transition there. Notifications live in the
notifications app's inbox, which pushes on ``/ws/notifications/`` through
this app's transport.
"""

from django.conf import settings
from django.db import models


class OrderEvent(models.Model):
    """Placement or a status change of one order, as its owner's stream shows it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="order_events"
    )
    # Named, not imported: realtime sits below the orders app, which writes these rows.
    order = models.ForeignKey(
        "orders.Order", on_delete=models.CASCADE, related_name="realtime_events"
    )
    from_status = models.CharField(max_length=20, blank=True)  # "" when the order was placed
    to_status = models.CharField(max_length=20)  # an orders.OrderStatus value
    reason = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["user", "id"], name="order_event_user_id_idx")]

    def __str__(self) -> str:
        return f"order {self.order_id}: {self.from_status or '(placed)'} -> {self.to_status}"
