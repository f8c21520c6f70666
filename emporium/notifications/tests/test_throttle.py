"""At most N non-critical notifications per window per channel; the rest become one digest."""

from __future__ import annotations

import datetime as dt

import pytest

from emporium.core.tests.factories import UserFactory
from emporium.notifications.channels.models import Delivery
from emporium.notifications.models import Dispatch, Notification
from emporium.notifications.services import Message, digests_release, notifications_send

pytestmark = pytest.mark.django_db

WINDOW_START = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _small_throttle(settings) -> None:  # type: ignore[no-untyped-def]
    settings.EMPORIUM_NOTIFICATIONS_THROTTLE_MAX = 3
    settings.EMPORIUM_NOTIFICATIONS_THROTTLE_WINDOW_SECONDS = 3600


def send(user, number: int, *, kind: str = "back_in_stock", minute: int = 0) -> None:  # type: ignore[no-untyped-def]
    notifications_send(
        messages=[
            Message(
                recipient_id=user.pk,
                kind=kind,
                title=f"update {number}",
                dedup_key=f"test:{number}",
            )
        ],
        now=WINDOW_START + dt.timedelta(minutes=minute),
    )


def test_past_the_limit_messages_are_folded_into_one_digest_per_channel() -> None:
    user, other = UserFactory(), UserFactory()
    for number in range(7):
        send(user, number, minute=number)
    send(other, 1)
    # Critical ones pass and do not count.
    send(user, 100, kind="payment_failed", minute=8)

    titles = list(
        Notification.objects.filter(recipient=user).order_by("pk").values_list("title", flat=True)
    )
    assert titles == ["update 0", "update 1", "update 2", "update 100"]
    assert Delivery.objects.filter(recipient=user, channel="email").count() == 4
    assert Dispatch.objects.filter(recipient=user, held=True).count() == 4 * 3

    # Nothing is due before the window ends.
    assert digests_release(now=WINDOW_START + dt.timedelta(minutes=59)) == 0
    assert digests_release(now=WINDOW_START + dt.timedelta(hours=1)) == 3  # one per channel
    assert digests_release(now=WINDOW_START + dt.timedelta(hours=2)) == 0

    digest = Notification.objects.filter(recipient=user, kind="digest").get()
    assert digest.title == "4 updates while you were away"
    assert digest.data["count"] == 4
    assert [item["title"] for item in digest.data["items"]] == [
        "update 3",
        "update 4",
        "update 5",
        "update 6",
    ]
    email_digest = Delivery.objects.get(recipient=user, channel="email", kind="digest")
    assert email_digest.dedup_key.startswith(f"{user.pk}:digest:email:")
    assert Notification.objects.filter(recipient=other).count() == 1


def test_a_redelivered_message_does_not_flip_from_sent_to_held() -> None:
    user = UserFactory()
    send(user, 0)
    for number in range(1, 5):
        send(user, number)
    send(user, 0)  # the first one again, now that the window is full
    assert Dispatch.objects.filter(recipient=user, dedup_key="test:0", held=True).count() == 0
    assert Notification.objects.filter(recipient=user, dedup_key="test:0").count() == 1


def test_a_new_window_starts_a_new_count() -> None:
    user = UserFactory()
    for number in range(4):
        send(user, number)
    send(user, 10, minute=61)
    assert Notification.objects.filter(recipient=user, title="update 10").exists()
    assert not Notification.objects.filter(recipient=user, title="update 3").exists()
