"""Reads of the inbox: each one range of an index that starts with the recipient."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet

from emporium.accounts.models import User
from emporium.core.errors import NotFound
from emporium.notifications.models import Broadcast, Notification


def notification_list(*, user: User, unread_only: bool = False) -> QuerySet[Notification]:
    """The user's notifications, newest first (the keyset paginator follows ``-id``).

    Walks (recipient, id) backwards, or the partial unread index for ``unread_only``.
    """
    queryset = Notification.objects.filter(recipient=user)
    if unread_only:
        queryset = queryset.filter(read_at__isnull=True)
    return queryset.order_by("-id")


def notifications_since(*, user: User, since: int, limit: int) -> list[Notification]:
    """The user's notifications with an id above ``since``, oldest first (``limit + 1`` read).

    What a client reconnecting to /ws/notifications/ missed.
    """
    return list(
        Notification.objects.filter(recipient=user, pk__gt=since).order_by("pk")[: limit + 1]
    )


def unread_count(*, user: User) -> tuple[int, bool]:
    """(count, capped): unread notifications, counted up to the configured cap.

    An index-only count over the partial unread index, bounded so that a user
    with a million unread broadcasts costs no more than one with the cap.
    """
    cap = int(settings.EMPORIUM_NOTIFICATIONS_UNREAD_COUNT_CAP)
    # A sliced queryset counts as SELECT COUNT(*) FROM (… LIMIT cap + 1).
    count = Notification.objects.filter(recipient=user, read_at__isnull=True)[: cap + 1].count()
    return min(count, cap), count > cap


def broadcast_get(*, broadcast_id: int) -> Broadcast:
    broadcast = Broadcast.objects.filter(pk=broadcast_id).first()
    if broadcast is None:
        raise NotFound("No such broadcast.")
    return broadcast
