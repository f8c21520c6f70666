"""The inbox, what each user wants to hear about, and staff broadcasts.

The inbox (``Notification``) is built to hold hundreds of millions of rows:
every read a user makes is one range of an index that starts with the
recipient, so its cost depends on the page, never on the table.

* ``notification_recipient_id_idx`` (recipient, id): "my newest first" walks it
  backwards; ``?since=`` resync walks it forwards.
* ``notification_unread_idx`` (recipient, id) WHERE read_at IS NULL: "my
  unread" and the unread count touch only unread rows, and rows leave the
  index as they are read, so it stays a small fraction of the table.
* ``notification_recipient_dedup_uniq`` (recipient, dedup_key): a trigger, a
  retried broadcast batch or a re-delivered event inserts with ``ON CONFLICT
  DO NOTHING`` against it, so nobody is told the same thing twice.

Ids grow with time, so "newest first" is "highest id first" and ``created_at``
needs no index of its own except for the retention prune, which walks the
primary key instead (docs/notifications.md).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class NotificationKind(models.TextChoices):
    ORDER_PLACED = "order_placed", "Order placed"
    # The value predates the inbox app: rows written before it say payment_succeeded.
    ORDER_PAID = "payment_succeeded", "Order paid"
    ORDER_SHIPPED = "order_shipped", "Order shipped"
    ORDER_DELIVERED = "order_delivered", "Order delivered"
    ORDER_CANCELLED = "order_cancelled", "Order cancelled"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    PRICE_DROPPED = "price_dropped", "Wishlisted product's price dropped"
    BACK_IN_STOCK = "back_in_stock", "Wishlisted product back in stock"
    BROADCAST = "broadcast", "Announcement"
    DIGEST = "digest", "Digest"


# Kinds that reach the user whatever their preferences, quiet hours and throttle say.
CRITICAL_KINDS = frozenset({NotificationKind.PAYMENT_FAILED, NotificationKind.ORDER_CANCELLED})
# Kinds a user can set preferences for (a digest follows the kinds it folds).
PREFERENCE_KINDS = tuple(kind for kind in NotificationKind if kind != NotificationKind.DIGEST)


class NotificationChannel(models.TextChoices):
    IN_APP = "in_app", "In-app"
    EMAIL = "email", "E-mail"
    PUSH = "push", "Push"


ALL_CHANNELS = tuple(NotificationChannel.values)
# The channels each kind can go out on (preferences choose among them). A placed
# order is confirmed by e-mail by the orders app itself (its receipt), so this app
# does not send a second one.
KIND_CHANNELS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(NotificationKind.values, ALL_CHANNELS),
    NotificationKind.ORDER_PLACED: (NotificationChannel.IN_APP, NotificationChannel.PUSH),
}


class Notification(models.Model):
    """One message in one user's inbox, pushed on /ws/notifications/ after commit."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
        # The (recipient, id) index serves the foreign key's lookups too.
        db_index=False,
    )
    kind = models.CharField(max_length=40)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    # What makes this message unique for its recipient: "event:<outbox event id>",
    # "broadcast:<id>", "digest:<channel>:<first held id>".
    dedup_key = models.CharField(max_length=120)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "dedup_key"], name="notification_recipient_dedup_uniq"
            )
        ]
        indexes = [
            models.Index(fields=["recipient", "id"], name="notification_recipient_id_idx"),
            models.Index(
                fields=["recipient", "id"],
                condition=Q(read_at__isnull=True),
                name="notification_unread_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"notification {self.pk} for user {self.recipient_id}: {self.kind}"


class NotificationSettings(models.Model):
    """A user's time zone and quiet hours (no row: UTC, no quiet hours)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="notification_settings",
    )
    time_zone = models.CharField(max_length=64, default="UTC")
    # Local times; start after end means the quiet hours span midnight (22:00-07:00).
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(quiet_hours_start__isnull=True, quiet_hours_end__isnull=True)
                    | Q(quiet_hours_start__isnull=False, quiet_hours_end__isnull=False)
                ),
                name="notification_settings_quiet_hours_pair",
            )
        ]

    def __str__(self) -> str:
        return f"notification settings of user {self.user_id}"


class NotificationPreference(models.Model):
    """A user's choice for one kind on one channel; no row means the default (on)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notification_preferences",
        db_index=False,  # the unique constraint leads with the user
    )
    kind = models.CharField(max_length=40, choices=NotificationKind.choices)
    channel = models.CharField(max_length=16, choices=NotificationChannel.choices)
    enabled = models.BooleanField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "kind", "channel"], name="notification_preference_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind}/{self.channel}: {'on' if self.enabled else 'off'}"


class Dispatch(models.Model):
    """One decision about one message for one recipient on one channel: sent now, or held.

    The unique (recipient, channel, dedup_key) makes the decision once: a
    re-delivered event finds its row and does nothing, whatever the throttle
    would say the second time. Sent rows are the throttle's count (non-critical
    ones in the window); held rows wait for the digest, which
    ``notifications.digests_release`` sends once ``release_after`` has passed
    (the end of the throttle window, or of the recipient's quiet hours).
    Rows older than a day are pruned.
    """

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    channel = models.CharField(max_length=16, choices=NotificationChannel.choices)
    dedup_key = models.CharField(max_length=120)
    kind = models.CharField(max_length=40)
    critical = models.BooleanField(default=False)
    held = models.BooleanField(default=False)
    # What a held message says, for the digest; empty for sent ones.
    title = models.CharField(max_length=200, blank=True, default="")
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    release_after = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    # The moment of the decision (the throttle window counts it), given by the sender.
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "channel", "dedup_key"], name="dispatch_recipient_dedup_uniq"
            )
        ]
        indexes = [
            # The throttle's count: this recipient's sends on this channel since t.
            models.Index(fields=["recipient", "channel", "created_at"], name="dispatch_window_idx"),
            models.Index(
                fields=["release_after"],
                condition=Q(held=True, released_at__isnull=True),
                name="dispatch_held_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.dedup_key} for {self.recipient_id}"


class BroadcastStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class AudienceType(models.TextChoices):
    ALL = "all", "All users"
    WISHLIST_PRODUCT = "wishlist_product", "Users with a product in their wishlist"
    WISHLIST_CATEGORY = "wishlist_category", "Users with a category's product in their wishlist"
    RECENT_BUYERS = "recent_buyers", "Users who ordered in the last N days"


class Broadcast(models.Model):
    """A message from staff to an audience, fanned out in batches of user-id ranges."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    title = models.CharField(max_length=200)
    body = models.TextField()
    channels = models.JSONField(default=list)  # NotificationChannel values
    audience_type = models.CharField(max_length=32, choices=AudienceType.choices)
    # The product or category id, or the number of days, the audience names.
    audience_value = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=BroadcastStatus.choices, default=BroadcastStatus.RUNNING
    )
    batches_total = models.PositiveIntegerField(default=0)
    batches_done = models.PositiveIntegerField(default=0)
    recipients_planned = models.PositiveIntegerField(default=0)
    # Inbox rows written (or e-mail/push deliveries queued, for a broadcast without in-app).
    recipients_done = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"broadcast {self.pk}: {self.title}"


class BroadcastBatch(models.Model):
    """One range of recipient ids of a broadcast; ``done_at`` is set in the batch's transaction."""

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="batches")
    number = models.PositiveIntegerField()
    first_user_id = models.BigIntegerField()
    last_user_id = models.BigIntegerField()
    recipients = models.PositiveIntegerField(default=0)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["broadcast", "number"], name="broadcast_batch_uniq")
        ]

    def __str__(self) -> str:
        return f"broadcast {self.broadcast_id} batch {self.number}"
