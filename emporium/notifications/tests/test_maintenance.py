"""Retention of read notifications, pruning of old decisions, stalled broadcasts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from emporium.core.tests.factories import StaffFactory, UserFactory
from emporium.notifications import tasks
from emporium.notifications.broadcasts import Audience, broadcast_create, broadcasts_stalled
from emporium.notifications.models import Broadcast, Dispatch, Notification

pytestmark = pytest.mark.django_db


def notification(user, key: str, *, age_days: int, read: bool) -> Notification:  # type: ignore[no-untyped-def]
    row = Notification.objects.create(
        recipient=user, kind="order_shipped", title=key, dedup_key=key
    )
    created = timezone.now() - dt.timedelta(days=age_days)
    Notification.objects.filter(pk=row.pk).update(
        created_at=created, read_at=created if read else None
    )
    return row


def test_prune_deletes_old_read_rows_only(settings) -> None:  # type: ignore[no-untyped-def]
    settings.EMPORIUM_NOTIFICATIONS_READ_RETENTION_DAYS = 30
    user = UserFactory()
    notification(user, "old-read", age_days=40, read=True)
    notification(user, "old-unread", age_days=40, read=False)
    notification(user, "new-read", age_days=5, read=True)
    old_decision = Dispatch.objects.create(
        recipient=user, channel="email", dedup_key="d1", kind="order_shipped",
        created_at=timezone.now() - dt.timedelta(days=2),
    )  # fmt: skip
    waiting = Dispatch.objects.create(
        recipient=user, channel="email", dedup_key="d2", kind="order_shipped", held=True,
        created_at=timezone.now() - dt.timedelta(days=2),
    )  # fmt: skip

    assert tasks.prune() == 2
    assert sorted(Notification.objects.values_list("title", flat=True)) == [
        "new-read",
        "old-unread",
    ]
    assert list(Dispatch.objects.values_list("pk", flat=True)) == [waiting.pk]
    assert not Dispatch.objects.filter(pk=old_decision.pk).exists()
    assert tasks.prune() == 0


def test_a_broadcast_that_stopped_moving_is_found_for_resumption() -> None:
    staff = StaffFactory()
    UserFactory()
    broadcast = broadcast_create(
        created_by=staff, title="t", body="b", channels=["in_app"], audience=Audience("all")
    )
    assert broadcasts_stalled(idle_for=dt.timedelta(minutes=2)) == []
    Broadcast.objects.filter(pk=broadcast.pk).update(
        started_at=timezone.now() - dt.timedelta(minutes=5)
    )
    assert broadcasts_stalled(idle_for=dt.timedelta(minutes=2)) == [broadcast.pk]
