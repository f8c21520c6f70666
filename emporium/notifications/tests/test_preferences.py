"""Preferences: opt-outs per kind and channel, critical kinds, quiet hours, bad input."""

from __future__ import annotations

import datetime as dt

import pytest

from emporium.core.tests.factories import UserFactory, client_for
from emporium.notifications.channels.models import Delivery
from emporium.notifications.models import (
    Dispatch,
    Notification,
    NotificationPreference,
    NotificationSettings,
)
from emporium.notifications.services import Message, Preferences, notifications_send

pytestmark = pytest.mark.django_db


def message(user, kind: str, key: str) -> Message:  # type: ignore[no-untyped-def]
    return Message(recipient_id=user.pk, kind=kind, title=f"{kind} {key}", dedup_key=key)


def test_defaults_are_on_and_the_matrix_lists_every_kind() -> None:
    body = client_for(UserFactory()).get("/api/notifications/preferences/").json()
    assert body["channels"]["order_shipped"] == {"in_app": True, "email": True, "push": True}
    assert body["channels"]["order_placed"] == {"in_app": True, "push": True}
    assert "digest" not in body["channels"]
    assert body["critical_kinds"] == ["order_cancelled", "payment_failed"]
    assert (body["time_zone"], body["quiet_hours"]) == ("UTC", None)


def test_opt_outs_are_honoured_and_critical_kinds_ignore_them() -> None:
    user = UserFactory()
    api = client_for(user)
    response = api.put(
        "/api/notifications/preferences/",
        {
            "channels": {
                "order_shipped": {"email": False, "push": False},
                "order_cancelled": {"in_app": False, "email": False},
            }
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["channels"]["order_shipped"] == {
        "in_app": True,
        "email": False,
        "push": False,
    }
    # Critical: shown as on whatever was stored, and sent on every channel.
    assert response.json()["channels"]["order_cancelled"]["email"] is True

    notifications_send(messages=[message(user, "order_shipped", "a")])
    notifications_send(messages=[message(user, "order_cancelled", "b")])
    assert list(
        Delivery.objects.filter(recipient=user).order_by("channel").values_list("channel", "kind")
    ) == [("email", "order_cancelled"), ("push", "order_cancelled")]
    assert sorted(Notification.objects.filter(recipient=user).values_list("kind", flat=True)) == [
        "order_cancelled",
        "order_shipped",
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"channels": {"order_shipped": {"email": False}, "no_such_kind": {"email": False}}},
        {"channels": {"order_shipped": {"email": False, "pigeon": True}}},
        {"channels": {"order_placed": {"email": True}}},  # not offered for that kind
        {"channels": {"order_shipped": {"email": False}}, "time_zone": "Mars/Olympus_Mons"},
        {"channels": {"order_shipped": "off"}},
        {"quiet_hours": {"start": "22:00"}},
        {},  # names nothing to change
        [{"channels": {"order_shipped": {"email": False}}}],  # not an object
    ],
)
def test_bad_preferences_are_400_and_write_nothing(body: dict | list) -> None:  # type: ignore[type-arg]
    user = UserFactory()
    response = client_for(user).put("/api/notifications/preferences/", body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert not NotificationPreference.objects.filter(user=user).exists()
    assert not NotificationSettings.objects.filter(user=user).exists()


def test_quiet_hours_hold_non_critical_push_until_they_end_in_the_users_time_zone() -> None:
    user = UserFactory()
    response = client_for(user).put(
        "/api/notifications/preferences/",
        {"time_zone": "Asia/Tokyo", "quiet_hours": {"start": "22:00", "end": "07:00"}},
        format="json",
    )
    assert response.json()["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    # 23:30 in Tokyo is 14:30 UTC; the quiet hours end at 07:00 Tokyo, 22:00 UTC.
    night = dt.datetime(2026, 3, 1, 14, 30, tzinfo=dt.UTC)
    notifications_send(messages=[message(user, "order_shipped", "n1")], now=night)
    notifications_send(messages=[message(user, "payment_failed", "n2")], now=night)

    held = Dispatch.objects.get(recipient=user, channel="push", dedup_key="n1")
    assert held.held is True
    assert held.release_after == dt.datetime(2026, 3, 1, 22, 0, tzinfo=dt.UTC)
    assert list(Delivery.objects.filter(recipient=user, channel="push").values_list("kind")) == [
        ("payment_failed",)
    ]
    # E-mail and in-app are not quiet.
    assert Delivery.objects.filter(recipient=user, channel="email").count() == 2


def test_quiet_hours_window_arithmetic() -> None:
    prefs = Preferences(
        time_zone="Europe/Paris", quiet_start=dt.time(22, 0), quiet_end=dt.time(7, 0)
    )
    # 20:00 UTC = 21:00 Paris in winter: not quiet.
    assert prefs.quiet_until(dt.datetime(2026, 1, 10, 20, 0, tzinfo=dt.UTC)) is None
    # 02:00 UTC = 03:00 Paris: quiet until 07:00 Paris = 06:00 UTC the same day.
    assert prefs.quiet_until(dt.datetime(2026, 1, 10, 2, 0, tzinfo=dt.UTC)) == dt.datetime(
        2026, 1, 10, 6, 0, tzinfo=dt.UTC
    )
    day = Preferences(quiet_start=dt.time(12, 0), quiet_end=dt.time(14, 0))
    assert day.quiet_until(dt.datetime(2026, 1, 10, 13, 0, tzinfo=dt.UTC)) == dt.datetime(
        2026, 1, 10, 14, 0, tzinfo=dt.UTC
    )
    assert day.quiet_until(dt.datetime(2026, 1, 10, 14, 0, tzinfo=dt.UTC)) is None


def test_clearing_quiet_hours() -> None:
    user = UserFactory()
    api = client_for(user)
    api.put(
        "/api/notifications/preferences/",
        {"quiet_hours": {"start": "22:00", "end": "07:00"}},
        format="json",
    )
    cleared = api.put("/api/notifications/preferences/", {"quiet_hours": None}, format="json")
    assert cleared.json()["quiet_hours"] is None
