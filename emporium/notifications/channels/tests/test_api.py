"""Device token registration and the dead letters API: contract, permissions, replay."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from emporium.accounts.roles import Role
from emporium.notifications.channels import services
from emporium.notifications.channels.models import Delivery, DeliveryStatus, DeviceToken
from emporium.notifications.channels.tests.factories import (
    StaffFactory,
    UserFactory,
    client_for,
    delivery_requests,
)

pytestmark = pytest.mark.django_db(transaction=True)

DEVICES = "/api/notifications/devices/"
DEAD = "/api/notifications/dead-letters/"
TOKEN = "eXampleFcmToken:APA91b-" + "x" * 40


def test_a_user_registers_lists_and_removes_a_device_token() -> None:
    user = UserFactory()
    client = client_for(user)
    created = client.post(DEVICES, {"token": TOKEN, "platform": "android"}, format="json")
    assert created.status_code == 201
    assert (created.json()["token"], created.json()["platform"]) == (TOKEN, "android")
    assert (
        client.post(DEVICES, {"token": TOKEN, "platform": "android"}, format="json").status_code
        == 201
    )
    assert [row["token"] for row in client.get(DEVICES).json()] == [TOKEN]
    assert DeviceToken.objects.filter(user=user).count() == 1
    assert client.delete(DEVICES, {"token": TOKEN}, format="json").status_code == 204
    assert DeviceToken.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"token": "short", "platform": "android"}, "token"),
        ({"token": "has spaces " + "x" * 30, "platform": "android"}, "token"),
        ({"token": "x" * 513, "platform": "android"}, "token"),
        ({"token": TOKEN, "platform": "pager"}, "platform"),
        ({"platform": "ios"}, "token"),
        ({"token": ["list"], "platform": "ios"}, "token"),
    ],
)
def test_an_invalid_token_is_a_400_in_the_error_shape_and_writes_nothing(
    body: dict[str, Any], field: str
) -> None:
    response = client_for(UserFactory()).post(DEVICES, body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]
    assert DeviceToken.objects.count() == 0


def test_removing_another_users_token_removes_nothing() -> None:
    owner = UserFactory()
    services.device_token_register(user_id=owner.pk, token=TOKEN, platform="ios")
    assert (
        client_for(UserFactory()).delete(DEVICES, {"token": TOKEN}, format="json").status_code
        == 204
    )
    assert DeviceToken.objects.filter(user=owner).count() == 1


def test_device_tokens_need_a_signed_in_user(api_client: Any) -> None:
    response = api_client.post(DEVICES, {"token": TOKEN, "platform": "android"}, format="json")
    assert response.status_code == 401
    assert DeviceToken.objects.count() == 0


def _dead_letters(count: int, *, channel: str, error: str) -> list[int]:
    users = UserFactory.create_batch(count)
    services.channel_deliveries_enqueue(
        requests=delivery_requests(users, channel=channel, key=f"{channel}-{error}")
    )
    ids = list(
        Delivery.objects.filter(recipient__in=users, channel=channel).values_list("id", flat=True)
    )
    Delivery.objects.filter(id__in=ids).update(
        status=DeliveryStatus.DEAD, last_error=error, attempts=8, finished_at=timezone.now()
    )
    mail.outbox.clear()  # the first attempts went out when the enqueue committed
    return sorted(ids)


def test_staff_list_dead_letters_filtered_by_channel_and_error() -> None:
    mailbox_full = _dead_letters(2, channel="email", error="SMTP 552 mailbox full")
    rejected = _dead_letters(1, channel="email", error="SMTP 550 no such user")
    push = _dead_letters(1, channel="push", error="HTTP 400 INVALID_ARGUMENT")
    client = client_for(StaffFactory(role=Role.ADMIN))
    everything = client.get(DEAD).json()["results"]
    assert sorted(row["id"] for row in everything) == sorted(mailbox_full + rejected + push)
    by_channel = client.get(DEAD, {"channel": "push"}).json()["results"]
    assert [row["id"] for row in by_channel] == push
    assert by_channel[0]["last_error"] == "HTTP 400 INVALID_ARGUMENT"
    by_error = client.get(DEAD, {"channel": "email", "error": "mailbox FULL"}).json()["results"]
    assert sorted(row["id"] for row in by_error) == mailbox_full
    bad = client.get(DEAD, {"channel": "fax"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "validation_error")


def test_customers_and_support_cannot_see_or_replay_dead_letters() -> None:
    ids = _dead_letters(1, channel="email", error="SMTP 552")
    for user in (UserFactory(), StaffFactory(role=Role.SUPPORT)):
        client = client_for(user)
        assert client.get(DEAD).status_code == 403
        assert client.post(f"{DEAD}{ids[0]}/replay/").status_code == 403
        assert client.post(f"{DEAD}replay/", {"ids": ids}, format="json").status_code == 403
    assert Delivery.objects.get(id=ids[0]).status == DeliveryStatus.DEAD


def test_replaying_a_dead_letter_twice_sends_it_once() -> None:
    ids = _dead_letters(1, channel="email", error="SMTP 451 later")
    client = client_for(StaffFactory(role=Role.ADMIN))
    first = client.post(f"{DEAD}{ids[0]}/replay/")
    second = client.post(f"{DEAD}{ids[0]}/replay/")
    assert (first.status_code, first.json()) == (202, {"replayed": 1})
    assert (second.status_code, second.json()) == (202, {"replayed": 0})
    assert len(mail.outbox) == 1
    assert Delivery.objects.get(id=ids[0]).status == DeliveryStatus.SENT
    missing = client.post(f"{DEAD}999999999/replay/")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


def test_bulk_replay_by_error_and_by_ids_is_idempotent() -> None:
    busy = _dead_letters(3, channel="email", error="SMTP 451 busy")
    other = _dead_letters(2, channel="email", error="SMTP 552 full")
    client = client_for(StaffFactory(role=Role.ADMIN))
    assert client.post(f"{DEAD}replay/", {"error": "busy"}, format="json").json() == {"replayed": 3}
    assert client.post(f"{DEAD}replay/", {"error": "busy"}, format="json").json() == {"replayed": 0}
    both = client.post(f"{DEAD}replay/", {"ids": busy + other}, format="json").json()
    assert both == {"replayed": 2}
    assert len(mail.outbox) == 5
    refused = client.post(f"{DEAD}replay/", {}, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "validation_error")
