"""Broadcasts: validation, audiences, batches written once, progress, cancellation."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from emporium.core.tests.factories import (
    CategoryFactory,
    OrderFactory,
    ProductFactory,
    StaffFactory,
    UserFactory,
    client_for,
)
from emporium.notifications.broadcasts import broadcast_batch_run
from emporium.notifications.channels.models import Delivery
from emporium.notifications.models import (
    Broadcast,
    BroadcastBatch,
    Notification,
    NotificationPreference,
)
from emporium.orders.models import Order
from emporium.wishlists.services import wishlist_item_add

pytestmark = pytest.mark.django_db

URL = "/api/notifications/broadcasts/"


def body(**changes):  # type: ignore[no-untyped-def]
    return {
        "title": "Summer sale",
        "body": "Everything -20 % until Sunday.",
        "channels": ["in_app"],
        "audience": {"type": "all"},
        **changes,
    }


def run_all(broadcast_id: int) -> int:
    return sum(
        broadcast_batch_run(broadcast_id=broadcast_id, number=number)
        for number in BroadcastBatch.objects.filter(broadcast_id=broadcast_id)
        .order_by("number")
        .values_list("number", flat=True)
    )


def test_a_broadcast_to_everyone_in_batches_reaches_each_active_user_once(settings) -> None:  # type: ignore[no-untyped-def]
    settings.EMPORIUM_NOTIFICATIONS_BROADCAST_BATCH = 3
    staff = StaffFactory()
    users = [UserFactory() for _ in range(7)]
    UserFactory(is_active=False)
    opted_out = UserFactory()
    NotificationPreference.objects.create(
        user=opted_out, kind="broadcast", channel="in_app", enabled=False
    )

    response = client_for(staff).post(URL, body(), format="json")
    assert response.status_code == 202, response.content
    progress = response.json()
    assert progress["status"] == "running"
    assert progress["recipients_planned"] == 9  # the 7 users, the one who opted out, staff
    assert progress["batches_total"] == 3

    assert run_all(progress["id"]) == 8
    assert run_all(progress["id"]) == 0  # every batch again: done, nothing written

    rows = Notification.objects.filter(kind="broadcast")
    assert sorted(rows.values_list("recipient_id", flat=True)) == sorted(
        [user.pk for user in users] + [staff.pk]
    )
    assert {row.dedup_key for row in rows} == {f"broadcast:{progress['id']}"}
    assert {(row.title, row.body) for row in rows} == {
        ("Summer sale", "Everything -20 % until Sunday.")
    }
    detail = client_for(staff).get(f"{URL}{progress['id']}/").json()
    assert (detail["status"], detail["batches_done"], detail["recipients_done"]) == (
        "completed",
        3,
        8,
    )
    assert detail["finished_at"] is not None


def test_the_same_batch_run_twice_or_overlapping_rows_never_duplicate() -> None:
    staff = StaffFactory()
    user = UserFactory()
    progress = client_for(staff).post(URL, body(), format="json").json()
    # A row that a crashed earlier attempt might have left (same dedup key).
    Notification.objects.create(
        recipient=user, kind="broadcast", title="x", dedup_key=f"broadcast:{progress['id']}"
    )
    run_all(progress["id"])
    assert Notification.objects.filter(recipient=user, kind="broadcast").count() == 1
    assert Notification.objects.filter(recipient=staff, kind="broadcast").count() == 1


def test_wishlist_and_recent_buyer_audiences() -> None:
    staff = StaffFactory()
    parent = CategoryFactory()
    child = CategoryFactory(parent=parent)
    in_child = ProductFactory(category=child)
    elsewhere = ProductFactory()
    fan_of_product, fan_of_category, other = UserFactory(), UserFactory(), UserFactory()
    wishlist_item_add(user=fan_of_product, product=in_child)
    wishlist_item_add(user=fan_of_category, product=in_child)
    wishlist_item_add(user=other, product=elsewhere)
    api = client_for(staff)

    def audience_of(audience: dict) -> set[int]:  # type: ignore[type-arg]
        response = api.post(URL, body(audience=audience), format="json")
        assert response.status_code == 202, response.content
        run_all(response.json()["id"])
        return set(
            Notification.objects.filter(dedup_key=f"broadcast:{response.json()['id']}").values_list(
                "recipient_id", flat=True
            )
        )

    assert audience_of({"type": "wishlist_product", "value": in_child.pk}) == {
        fan_of_product.pk,
        fan_of_category.pk,
    }
    assert audience_of({"type": "wishlist_category", "value": parent.pk}) == {
        fan_of_product.pk,
        fan_of_category.pk,
    }
    recent, old = UserFactory(), UserFactory()
    OrderFactory(user=recent)
    stale = OrderFactory(user=old)
    Order.objects.filter(pk=stale.pk).update(created_at=timezone.now() - dt.timedelta(days=40))
    assert audience_of({"type": "recent_buyers", "value": 30}) == {recent.pk}


def test_email_and_push_broadcasts_queue_deliveries_once() -> None:
    staff = StaffFactory()
    user = UserFactory()
    NotificationPreference.objects.create(
        user=user, kind="broadcast", channel="email", enabled=False
    )
    progress = client_for(staff).post(URL, body(channels=["email", "push"]), format="json").json()
    run_all(progress["id"])
    run_all(progress["id"])
    assert sorted(
        Delivery.objects.filter(kind="broadcast").values_list("recipient_id", "channel")
    ) == sorted([(staff.pk, "email"), (staff.pk, "push"), (user.pk, "push")])
    assert not Notification.objects.filter(kind="broadcast").exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"title": ""}, "title"),
        ({"body": "x" * 4001}, "body"),
        ({"body": ""}, "body"),
        ({"channels": []}, "channels"),
        ({"channels": ["in_app", "pigeon"]}, "channels"),
        ({"audience": {"type": "everyone"}}, "audience"),
        ({"audience": {"type": "wishlist_product", "value": 999999}}, "audience.value"),
        ({"audience": {"type": "wishlist_category"}}, "audience.value"),
        ({"audience": {"type": "recent_buyers", "value": 0}}, "audience.value"),
    ],
)
def test_bad_broadcasts_are_400_and_write_nothing(changes: dict, field: str) -> None:  # type: ignore[type-arg]
    staff = StaffFactory()
    response = client_for(staff).post(URL, body(**changes), format="json")
    assert response.status_code == 400, response.content
    assert field in str(response.json()["error"]["details"])
    assert not Broadcast.objects.exists()
    assert not Notification.objects.exists()


def test_an_empty_audience_is_400_and_writes_nothing() -> None:
    staff = StaffFactory()
    product = ProductFactory()  # wishlisted by nobody
    response = client_for(staff).post(
        URL, body(audience={"type": "wishlist_product", "value": product.pk}), format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_audience"
    assert not Broadcast.objects.exists()
    assert not BroadcastBatch.objects.exists()


def test_customers_cannot_broadcast_or_read_progress() -> None:
    customer = UserFactory()
    assert client_for(customer).post(URL, body(), format="json").status_code == 403
    staff = StaffFactory()
    progress = client_for(staff).post(URL, body(), format="json").json()
    assert client_for(customer).get(f"{URL}{progress['id']}/").status_code == 403
    assert client_for(customer).post(f"{URL}{progress['id']}/cancel/").status_code == 403
    assert client_for(staff).get(f"{URL}{progress['id'] + 1}/").status_code == 404


def test_cancellation_stops_the_remaining_batches(settings) -> None:  # type: ignore[no-untyped-def]
    settings.EMPORIUM_NOTIFICATIONS_BROADCAST_BATCH = 2
    staff = StaffFactory()
    for _ in range(5):
        UserFactory()
    api = client_for(staff)
    progress = api.post(URL, body(), format="json").json()
    assert progress["batches_total"] == 3
    assert broadcast_batch_run(broadcast_id=progress["id"], number=0) == 2

    cancelled = api.post(f"{URL}{progress['id']}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert run_all(progress["id"]) == 0
    assert Notification.objects.filter(kind="broadcast").count() == 2
    again = api.post(f"{URL}{progress['id']}/cancel/")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "broadcast_finished"
    detail = api.get(f"{URL}{progress['id']}/").json()
    assert (detail["status"], detail["batches_done"], detail["recipients_done"]) == (
        "cancelled",
        1,
        2,
    )
