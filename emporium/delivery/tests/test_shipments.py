"""Devices and shipments over the API: issuing and revoking tokens, creating and
moving shipments, and tracking one's own shipment."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.fields import DateTimeField
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.core.tests.factories import OrderFactory, StaffFactory, UserFactory, client_for
from emporium.delivery import services
from emporium.delivery.models import CourierDevice, Shipment, ShipmentStatus
from emporium.delivery.tests.support import (
    device_client,
    error_of,
    make_device,
    point,
    post_json,
)
from emporium.orders.models import Order, OrderStatus, OrderStatusChange

pytestmark = pytest.mark.django_db

DEVICES_URL = "/api/devices/"
SHIPMENTS_URL = "/api/shipments/"
NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "details": {}}}


def rendered(moment: datetime | None) -> str | None:
    return None if moment is None else DateTimeField().to_representation(moment)


def shipment_body(shipment: Shipment) -> dict[str, Any]:
    shipment.refresh_from_db()
    return {
        "id": shipment.pk,
        "order": shipment.order_id,
        "device": shipment.device_id,
        "status": shipment.status,
        "in_transit_at": rendered(shipment.in_transit_at),
        "delivered_at": rendered(shipment.delivered_at),
        "created_at": rendered(shipment.created_at),
        "updated_at": rendered(shipment.updated_at),
    }


def make_shipment(
    customer: User | None = None, *, created_minutes_ago: int = 0
) -> tuple[Shipment, str]:
    device, token = make_device()
    order = OrderFactory(user=customer or UserFactory(), order_status=OrderStatus.PAID)
    shipment = services.shipment_create(order=order, device=device)
    if created_minutes_ago:
        Shipment.objects.filter(pk=shipment.pk).update(
            created_at=timezone.now() - timedelta(minutes=created_minutes_ago)
        )
        shipment.refresh_from_db()
    return shipment, token


# -- devices -----------------------------------------------------------------------------


def test_staff_issue_a_device_and_see_its_token_once() -> None:
    staff = client_for(StaffFactory())

    created = staff.post(DEVICES_URL, {"name": "van 7"}, format="json")

    assert created.status_code == 201
    body = created.json()
    device = CourierDevice.objects.get()
    assert body == {
        "id": device.pk,
        "name": "van 7",
        "metadata": None,
        "is_active": True,
        "revoked_at": None,
        "created_at": rendered(device.created_at),
        "updated_at": rendered(device.updated_at),
        "token": body["token"],
    }
    assert body["token"].startswith("dev_")
    assert len(body["token"]) > 40
    assert device.token_hash == hashlib.sha256(body["token"].encode()).hexdigest()
    assert "token" not in staff.get(f"{DEVICES_URL}{device.pk}/").json()
    assert "token" not in staff.get(DEVICES_URL).json()["results"][0]
    assert post_json(device_client(body["token"]), []).status_code == 200


def test_a_device_needs_a_name() -> None:
    response = client_for(StaffFactory()).post(DEVICES_URL, {}, format="json")

    assert response.status_code == 400
    assert list(error_of(response)["details"]) == ["name"]
    assert not CourierDevice.objects.exists()


def test_revoking_a_device_stops_its_token_and_keeps_the_first_revocation_time() -> None:
    device, token = make_device()
    staff = client_for(StaffFactory())

    first = staff.post(f"{DEVICES_URL}{device.pk}/revoke/")
    second = staff.post(f"{DEVICES_URL}{device.pk}/revoke/")

    assert first.status_code == second.status_code == 200
    assert first.json()["is_active"] is False
    assert first.json()["revoked_at"] is not None
    assert second.json()["revoked_at"] == first.json()["revoked_at"]
    assert post_json(device_client(token), []).status_code == 401


def test_rotating_a_token_gives_a_new_one_and_a_revoked_device_cannot_rotate() -> None:
    device, token = make_device()
    staff = client_for(StaffFactory())

    rotated = staff.post(f"{DEVICES_URL}{device.pk}/rotate-token/")
    staff.post(f"{DEVICES_URL}{device.pk}/revoke/")
    refused = staff.post(f"{DEVICES_URL}{device.pk}/rotate-token/")

    assert rotated.status_code == 200
    assert rotated.json()["token"] != token
    assert refused.status_code == 409
    assert error_of(refused)["code"] == "device_revoked"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", ""),
        ("post", ""),
        ("get", "{id}/"),
        ("post", "{id}/revoke/"),
        ("post", "{id}/rotate-token/"),
    ],
)
def test_customers_cannot_manage_devices(method: str, path: str) -> None:
    device, _ = make_device()

    response = getattr(client_for(UserFactory()), method)(
        DEVICES_URL + path.format(id=device.pk), {"name": "x"}, format="json"
    )

    assert response.status_code == 403
    device.refresh_from_db()
    assert device.is_active is True
    assert CourierDevice.objects.count() == 1


# -- shipments ---------------------------------------------------------------------------


def test_staff_create_a_shipment_for_a_paid_order_which_becomes_shipped() -> None:
    staff_user = StaffFactory()
    device, _ = make_device()
    order = OrderFactory(order_status=OrderStatus.PAID)

    response = client_for(staff_user).post(
        SHIPMENTS_URL, {"order": order.pk, "device": device.pk}, format="json"
    )

    assert response.status_code == 201
    shipment = Shipment.objects.get()
    assert response.json() == shipment_body(shipment)
    assert (shipment.status, shipment.device_id, shipment.created_by) == (
        ShipmentStatus.ASSIGNED,
        device.pk,
        staff_user,
    )
    order.refresh_from_db()
    assert order.order_status == OrderStatus.SHIPPED
    assert list(
        OrderStatusChange.objects.filter(order=order).values_list(
            "from_status", "to_status", "actor", "reason"
        )
    ) == [(OrderStatus.PAID, OrderStatus.SHIPPED, staff_user.pk, "shipment")]


def test_an_order_already_shipped_can_be_given_its_shipment() -> None:
    device, _ = make_device()
    order = OrderFactory(order_status=OrderStatus.SHIPPED)

    shipment = services.shipment_create(order=order, device=device)

    assert shipment.status == ShipmentStatus.ASSIGNED
    assert Order.objects.get(pk=order.pk).order_status == OrderStatus.SHIPPED


@pytest.mark.parametrize(
    "order_status",
    [
        OrderStatus.PENDING_PAYMENT,
        OrderStatus.CANCELLED,
        OrderStatus.DELIVERED,
        OrderStatus.PAYMENT_FAILED,
    ],
)
def test_an_order_that_is_not_paid_or_shipped_cannot_be_shipped(order_status: str) -> None:
    device, _ = make_device()
    order = OrderFactory(order_status=order_status)

    response = client_for(StaffFactory()).post(
        SHIPMENTS_URL, {"order": order.pk, "device": device.pk}, format="json"
    )

    assert response.status_code == 409
    assert error_of(response) == {
        "code": "order_not_shippable",
        "message": "Only a paid or shipped order can be given a shipment.",
        "details": {"order": order.pk, "order_status": order_status},
    }
    assert not Shipment.objects.exists()
    assert Order.objects.get(pk=order.pk).order_status == order_status


def test_a_revoked_device_cannot_take_a_shipment_and_the_order_stays_paid() -> None:
    device, _ = make_device()
    services.device_revoke(device=device)
    order = OrderFactory(order_status=OrderStatus.PAID)

    response = client_for(StaffFactory()).post(
        SHIPMENTS_URL, {"order": order.pk, "device": device.pk}, format="json"
    )

    assert response.status_code == 409
    assert error_of(response)["code"] == "device_revoked"
    assert not Shipment.objects.exists()
    assert Order.objects.get(pk=order.pk).order_status == OrderStatus.PAID
    assert not OrderStatusChange.objects.exists()


def test_an_order_gets_one_shipment_only() -> None:
    shipment, _ = make_shipment()
    other_device, _ = make_device()

    response = client_for(StaffFactory()).post(
        SHIPMENTS_URL, {"order": shipment.order_id, "device": other_device.pk}, format="json"
    )

    assert response.status_code == 409
    assert error_of(response)["code"] == "shipment_exists"
    assert Shipment.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"device": 1}, "order"),
        ({"order": 999_999, "device": 1}, "order"),
        ({"order": 1}, "device"),
    ],
)
def test_a_shipment_needs_an_existing_order_and_device(payload: dict[str, int], field: str) -> None:
    response = client_for(StaffFactory()).post(SHIPMENTS_URL, payload, format="json")

    assert response.status_code == 400
    assert field in error_of(response)["details"]


def test_start_and_deliver_move_the_shipment_and_deliver_the_order() -> None:
    staff_user = StaffFactory()
    shipment, _ = make_shipment()
    staff = client_for(staff_user)

    started = staff.post(f"{SHIPMENTS_URL}{shipment.pk}/start/")
    delivered = staff.post(f"{SHIPMENTS_URL}{shipment.pk}/deliver/")
    again = staff.post(f"{SHIPMENTS_URL}{shipment.pk}/deliver/")
    restart = staff.post(f"{SHIPMENTS_URL}{shipment.pk}/start/")

    assert started.status_code == 200
    assert started.json()["status"] == ShipmentStatus.IN_TRANSIT
    assert started.json()["in_transit_at"] is not None
    assert delivered.status_code == 200
    assert delivered.json() == shipment_body(shipment)
    assert shipment.status == ShipmentStatus.DELIVERED
    order = Order.objects.get(pk=shipment.order_id)
    assert order.order_status == OrderStatus.DELIVERED
    assert OrderStatusChange.objects.filter(
        order=order, to_status=OrderStatus.DELIVERED, actor=staff_user
    ).exists()
    assert again.status_code == restart.status_code == 409
    assert error_of(again)["code"] == "illegal_transition"
    assert error_of(again)["details"] == {"from": "delivered", "to": "delivered"}


@pytest.mark.parametrize("action", ["start", "deliver"])
def test_customers_cannot_move_even_their_own_shipment(action: str) -> None:
    customer = UserFactory()
    shipment, _ = make_shipment(customer)

    response = client_for(customer).post(f"{SHIPMENTS_URL}{shipment.pk}/{action}/")

    assert response.status_code == 403
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.ASSIGNED


def test_customers_cannot_create_shipments() -> None:
    customer = UserFactory()
    device, _ = make_device()
    order = OrderFactory(user=customer, order_status=OrderStatus.PAID)

    response = client_for(customer).post(
        SHIPMENTS_URL, {"order": order.pk, "device": device.pk}, format="json"
    )

    assert response.status_code == 403
    assert not Shipment.objects.exists()


def test_customers_list_their_own_shipments_and_staff_list_all() -> None:
    customer = UserFactory()
    mine, _ = make_shipment(customer)
    theirs, _ = make_shipment()

    own = client_for(customer).get(SHIPMENTS_URL)
    every = client_for(StaffFactory()).get(SHIPMENTS_URL)

    assert [row["id"] for row in own.json()["results"]] == [mine.pk]
    assert [row["id"] for row in every.json()["results"]] == [theirs.pk, mine.pk]
    assert client_for(customer).get(f"{SHIPMENTS_URL}{theirs.pk}/").json() == NOT_FOUND


# -- tracking ----------------------------------------------------------------------------


def test_a_customer_tracks_their_own_shipment() -> None:
    customer = UserFactory()
    shipment, token = make_shipment(customer, created_minutes_ago=20)
    device_id = shipment.device_id
    minute = (timezone.now() - timedelta(minutes=5)).replace(second=0, microsecond=0)
    before_shipment = minute - timedelta(minutes=30)
    post_json(
        device_client(token),
        [
            point(device_id, before_shipment, 1.0, 1.0),
            point(device_id, minute + timedelta(seconds=10), 10.0, 20.0),
            point(device_id, minute + timedelta(seconds=20), 12.0, 22.0, speed=8.0),
        ],
    )

    response = client_for(customer).get(f"{SHIPMENTS_URL}{shipment.pk}/track/")

    assert response.status_code == 200
    body = response.json()
    assert body["shipment"] == shipment_body(shipment)
    assert body["position"] == {
        "device_id": device_id,
        "recorded_at": rendered(minute + timedelta(seconds=20)),
        "latitude": 12.0,
        "longitude": 22.0,
        "speed": 8.0,
        "heading": None,
        "accuracy": None,
    }
    assert body["recent"]["window"] == "1m"
    assert body["recent"]["device_id"] == device_id
    # The point from before the shipment existed is not part of the customer's view.
    assert [(row["start"], row["count"], row["latitude"]) for row in body["recent"]["results"]] == [
        (rendered(minute), 2, 11.0)
    ]


def test_another_customers_shipment_is_not_found() -> None:
    shipment, _ = make_shipment()
    stranger = client_for(UserFactory())

    someone_elses = stranger.get(f"{SHIPMENTS_URL}{shipment.pk}/track/")
    missing = stranger.get(f"{SHIPMENTS_URL}999999/track/")

    assert someone_elses.status_code == missing.status_code == 404
    assert someone_elses.json() == missing.json() == NOT_FOUND


def test_staff_track_any_shipment_and_anonymous_callers_none() -> None:
    shipment, _ = make_shipment()

    staff = client_for(StaffFactory()).get(f"{SHIPMENTS_URL}{shipment.pk}/track/")
    anonymous = APIClient().get(f"{SHIPMENTS_URL}{shipment.pk}/track/")

    assert staff.status_code == 200
    assert staff.json()["position"] is None
    assert staff.json()["recent"]["results"] == []
    assert anonymous.status_code == 401


def test_a_position_older_than_the_shipment_is_not_shown() -> None:
    customer = UserFactory()
    shipment, token = make_shipment(customer, created_minutes_ago=2)
    post_json(
        device_client(token),
        [point(shipment.device_id, timezone.now() - timedelta(minutes=10), 5.0, 5.0)],
    )

    response = client_for(customer).get(f"{SHIPMENTS_URL}{shipment.pk}/track/")

    assert response.json()["position"] is None


def test_after_delivery_the_courier_is_shown_where_the_parcel_was_delivered() -> None:
    customer = UserFactory()
    shipment, token = make_shipment(customer, created_minutes_ago=30)
    device_id = shipment.device_id
    delivered_at = timezone.now() - timedelta(minutes=10)
    services.shipment_deliver(shipment=shipment)
    Shipment.objects.filter(pk=shipment.pk).update(delivered_at=delivered_at)
    at_door = delivered_at - timedelta(minutes=1)
    post_json(
        device_client(token),
        [
            point(device_id, at_door, 40.0, 50.0),
            point(device_id, delivered_at + timedelta(minutes=5), 41.0, 51.0),  # next job
        ],
    )

    body = client_for(customer).get(f"{SHIPMENTS_URL}{shipment.pk}/track/").json()

    assert (body["position"]["recorded_at"], body["position"]["latitude"]) == (
        rendered(at_door),
        40.0,
    )
    assert body["recent"]["to"] == rendered(delivered_at)
    assert [row["latitude"] for row in body["recent"]["results"]] == [40.0]
