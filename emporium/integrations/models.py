import uuid

from django.db import models
from django.db.models import Q


class OutboxEvent(models.Model):
    """A domain event written in the same transaction as the change it describes.

    The relay publishes unpublished rows to the broker and stamps
    ``published_at``. The id travels with the message, so a consumer that sees
    an event twice (the relay crashed between publishing and stamping) can
    drop the duplicate.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event_type = models.CharField(max_length=64)
    aggregate_type = models.CharField(max_length=32)
    aggregate_id = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    # The request id and trace context of the work that recorded the event
    # (emporium.core.correlation): the relay and the tasks it starts continue them.
    correlation = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(published_at__isnull=True),
                name="outbox_unpublished_idx",
            ),
            models.Index(fields=["aggregate_type", "aggregate_id"], name="outbox_aggregate_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.aggregate_type}:{self.aggregate_id}"
