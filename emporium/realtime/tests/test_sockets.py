"""The WebSocket endpoints through a real server and real sockets.

With REDIS_URL set, every event here crosses Redis pub/sub; without it the
embedded profile's in-process hub carries it.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.test import Client
from django.utils import timezone
from websockets.sync.client import connect

import emporium.realtime
from emporium.accounts.roles import Role
from emporium.core.tests.factories import OrderFactory, StaffFactory, UserFactory, client_for
from emporium.delivery import services as delivery_services
from emporium.delivery.tests.support import device_client, make_device, point, post_json
from emporium.orders.models import OrderStatus
from emporium.orders.services import order_transition
from emporium.realtime import groups, services
from emporium.realtime.models import OrderEvent
from emporium.realtime.tests.conftest import (
    LiveServer,
    StalledClient,
    close_code,
    open_with_subprotocol,
    receive_event,
    receive_json,
    token_for,
    welcomed,
)
from emporium.realtime.transport import dumps, publish_text

pytestmark = pytest.mark.django_db(transaction=True)


# -- authentication and authorisation ------------------------------------------------------


def test_no_token_is_closed_with_4401_after_the_auth_timeout(live_ws: LiveServer) -> None:
    with connect(live_ws.url("/ws/orders/"), open_timeout=10) as socket:
        assert close_code(socket) == 4401


def test_a_first_message_without_a_token_is_closed_with_4401(live_ws: LiveServer) -> None:
    with connect(live_ws.url("/ws/orders/"), open_timeout=10) as socket:
        socket.send(json.dumps({"type": "auth"}))
        assert close_code(socket) == 4401


@pytest.mark.parametrize("how", ["subprotocol", "first message"])
def test_bad_and_expired_tokens_are_closed_with_4401(live_ws: LiveServer, how: str) -> None:
    user = UserFactory()
    for token in ["not-a-jwt", token_for(user, expired=True), token_for(user) + "x"]:
        if how == "subprotocol":
            with open_with_subprotocol(live_ws, "/ws/orders/", token) as socket:
                assert close_code(socket) == 4401, token
        else:
            with connect(live_ws.url("/ws/orders/"), open_timeout=10) as socket:
                socket.send(json.dumps({"type": "auth", "token": token}))
                assert close_code(socket) == 4401, token


@pytest.mark.parametrize(
    "levels",
    [
        pytest.param(4_000, id="deep-within-the-message-size"),
        pytest.param(10_000, id="deep-and-oversized"),
    ],
)
def test_a_deeply_nested_first_message_is_closed_with_4401(
    live_ws: LiveServer, levels: int
) -> None:
    """Nesting past the JSON depth limit is a malformed message, not a crashed consumer."""
    user = UserFactory()
    with connect(live_ws.url("/ws/orders/"), open_timeout=10) as socket:
        socket.send("[" * levels + "]" * levels)
        assert close_code(socket) == 4401
    # The server goes on serving.
    with connect(live_ws.url("/ws/orders/"), open_timeout=10) as socket:
        socket.send(json.dumps({"type": "auth", "token": token_for(user)}))
        assert welcomed(socket)["user_id"] == user.pk


def test_token_in_the_subprotocol_header(live_ws: LiveServer) -> None:
    user = UserFactory()
    with open_with_subprotocol(live_ws, "/ws/orders/", token_for(user)) as socket:
        # The server picks the protocol name, never echoing the token.
        assert socket.subprotocol == "emporium.jwt"
        assert welcomed(socket) == {"type": "welcome", "stream": "orders", "user_id": user.pk}


def test_token_in_the_first_message(live_ws: LiveServer) -> None:
    user = UserFactory()
    with connect(live_ws.url("/ws/notifications/"), open_timeout=10) as socket:
        socket.send(json.dumps({"type": "auth", "token": token_for(user)}))
        assert welcomed(socket) == {
            "type": "welcome",
            "stream": "notifications",
            "user_id": user.pk,
        }


def test_a_deactivated_user_is_refused(live_ws: LiveServer) -> None:
    user = UserFactory()
    token = token_for(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    with open_with_subprotocol(live_ws, "/ws/orders/", token) as socket:
        assert close_code(socket) == 4401


def _shipment_of(customer: Any) -> Any:
    device, _ = make_device()
    order = OrderFactory(user=customer, order_status=OrderStatus.PAID)
    return delivery_services.shipment_create(order=order, device=device)


def test_shipment_watchers_own_it_or_are_staff(live_ws: LiveServer) -> None:
    owner, stranger, staff = UserFactory(), UserFactory(), StaffFactory()
    shipment = _shipment_of(owner)
    path = f"/ws/shipments/{shipment.pk}/"

    with open_with_subprotocol(live_ws, path, token_for(stranger)) as socket:
        assert close_code(socket) == 4403
    # A customer cannot tell a missing shipment from someone else's.
    with open_with_subprotocol(live_ws, "/ws/shipments/999999/", token_for(stranger)) as socket:
        assert close_code(socket) == 4403
    with open_with_subprotocol(live_ws, "/ws/shipments/999999/", token_for(staff)) as socket:
        assert close_code(socket) == 4404
    for watcher in (owner, staff):
        with open_with_subprotocol(live_ws, path, token_for(watcher)) as socket:
            assert welcomed(socket)["stream"] == "shipment"


def test_shipment_and_dashboard_sockets_follow_permissions_not_is_staff(
    live_ws: LiveServer,
) -> None:
    """Support holds delivery.view_shipment and dashboard.view_dashboard; a catalog
    manager (staff, neither permission) is a stranger to both."""
    owner = UserFactory()
    support, manager = StaffFactory(role=Role.SUPPORT), StaffFactory(role=Role.CATALOG_MANAGER)
    shipment_path = f"/ws/shipments/{_shipment_of(owner).pk}/"

    with open_with_subprotocol(live_ws, shipment_path, token_for(support)) as socket:
        assert welcomed(socket)["stream"] == "shipment"
    with open_with_subprotocol(live_ws, "/ws/shipments/999999/", token_for(support)) as socket:
        assert close_code(socket) == 4404
    with open_with_subprotocol(live_ws, "/ws/dashboard/", token_for(support)) as socket:
        assert welcomed(socket)["stream"] == "dashboard"
    for path in (shipment_path, "/ws/shipments/999999/", "/ws/dashboard/"):
        with open_with_subprotocol(live_ws, path, token_for(manager)) as socket:
            assert close_code(socket) == 4403, path


def test_unknown_paths_are_closed_with_4404(live_ws: LiveServer) -> None:
    with connect(live_ws.url("/ws/nothing-here/"), open_timeout=10) as socket:
        assert close_code(socket) == 4404


def test_dashboard_is_for_staff_by_jwt_or_by_session_from_an_allowed_origin(
    live_ws: LiveServer,
) -> None:
    customer, staff = UserFactory(), StaffFactory()
    with open_with_subprotocol(live_ws, "/ws/dashboard/", token_for(customer)) as socket:
        assert close_code(socket) == 4403
    with open_with_subprotocol(live_ws, "/ws/dashboard/", token_for(staff)) as socket:
        assert welcomed(socket)["stream"] == "dashboard"

    browser = Client()
    browser.force_login(staff)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    with connect(
        live_ws.url("/ws/dashboard/"),
        additional_headers={"Cookie": cookie},
        origin="http://127.0.0.1:8000",  # type: ignore[arg-type]
        open_timeout=10,
    ) as socket:
        assert welcomed(socket) == {"type": "welcome", "stream": "dashboard", "user_id": staff.pk}
    # The same cookie from a page of another site is not a login (no hijacking).
    with connect(
        live_ws.url("/ws/dashboard/"),
        additional_headers={"Cookie": cookie},
        origin="https://evil.example",  # type: ignore[arg-type]
        open_timeout=10,
    ) as socket:
        assert close_code(socket) == 4401


def test_group_send_to_dashboard_reaches_every_staff_socket(live_ws: LiveServer) -> None:
    staff = StaffFactory()
    first = open_with_subprotocol(live_ws, "/ws/dashboard/", token_for(staff))
    second = open_with_subprotocol(live_ws, "/ws/dashboard/", token_for(staff))
    with first, second:
        welcomed(first)
        welcomed(second)
        payload = {"type": "figures", "orders_per_minute": 12, "note": "ünïcode"}
        async_to_sync(get_channel_layer().group_send)(
            "dashboard", {"type": "dashboard.event", "event": payload}
        )
        assert receive_event(first, "figures") == payload
        assert receive_event(second, "figures") == payload
        assert _eventually_counted(2)
    assert _eventually_counted(0)


def _eventually_counted(expected: int) -> bool:
    """connections_open() reaches ``expected`` (with Redis, within a heartbeat or two)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if emporium.realtime.connections_open() == expected:
            return True
        time.sleep(0.2)
    return False


# -- order events, notifications, resync ----------------------------------------------------


def test_order_events_arrive_in_order_after_commit_and_match_the_rest_resync(
    live_ws: LiveServer,
) -> None:
    customer, other = UserFactory(), UserFactory()
    with open_with_subprotocol(live_ws, "/ws/orders/", token_for(customer)) as socket:
        welcomed(socket)
        order = OrderFactory(user=customer, order_status=OrderStatus.PENDING_PAYMENT)
        with transaction.atomic():
            services.order_placed_record(order=order)
        OrderFactory(user=other)  # someone else's order events never reach this socket
        services.order_placed_record(order=OrderFactory(user=other))
        order_transition(order_id=order.pk, to_status=OrderStatus.PAID)
        order_transition(order_id=order.pk, to_status=OrderStatus.SHIPPED)

        pushed = [receive_json(socket) for _ in range(3)]

    assert [(event["from_status"], event["to_status"]) for event in pushed] == [
        ("", "pending_payment"),
        ("pending_payment", "paid"),
        ("paid", "shipped"),
    ]
    assert {event["order_id"] for event in pushed} == {order.pk}
    ids = [event["id"] for event in pushed]
    assert ids == sorted(ids)

    api = client_for(customer)
    everything = api.get("/api/orders/events/").json()
    assert everything == {"results": pushed, "has_more": False}
    # A client that saw only the first event asks for the rest.
    missed = api.get(f"/api/orders/events/?since={ids[0]}&limit=1").json()
    assert missed == {"results": pushed[1:2], "has_more": True}
    assert api.get(f"/api/orders/events/?since={ids[-1]}").json() == {
        "results": [],
        "has_more": False,
    }
    # The other customer sees only their own event.
    theirs = client_for(other).get("/api/orders/events/").json()["results"]
    assert [event["order_id"] for event in theirs] == list(
        OrderEvent.objects.filter(user=other).values_list("order_id", flat=True)
    )
    assert all(event["id"] not in ids for event in theirs)


def test_a_rolled_back_change_is_never_announced(live_ws: LiveServer) -> None:
    customer = UserFactory()
    order = OrderFactory(user=customer, order_status=OrderStatus.PENDING_PAYMENT)
    with open_with_subprotocol(live_ws, "/ws/orders/", token_for(customer)) as orders_socket:
        welcomed(orders_socket)

        def pay_then_fail() -> None:
            with transaction.atomic():
                order_transition(order_id=order.pk, to_status=OrderStatus.PAID)
                raise RuntimeError("the request failed after the change")

        with pytest.raises(RuntimeError):
            pay_then_fail()
        assert not OrderEvent.objects.exists()

        order_transition(order_id=order.pk, to_status=OrderStatus.CANCELLED)

        # The next (and only) event is the committed cancellation.
        event = receive_json(orders_socket)
        assert (event["from_status"], event["to_status"]) == ("pending_payment", "cancelled")
        with pytest.raises(TimeoutError):
            orders_socket.recv(timeout=0.5)


def test_since_must_be_a_non_negative_integer(live_ws: LiveServer) -> None:
    api = client_for(UserFactory())
    for query in ["since=-1", "since=abc", "limit=0", "limit=501"]:
        response = api.get(f"/api/notifications/?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"]["code"] == "validation_error"
    assert client_for(UserFactory()).get("/api/orders/events/?since=x").status_code == 400


# -- slow clients and throttling ---------------------------------------------------------------


def test_a_slow_client_is_closed_with_4408_and_never_holds_up_a_fast_one(
    live_ws: LiveServer,
) -> None:
    user = UserFactory()
    token = token_for(user)
    slow = StalledClient(live_ws, "/ws/notifications/", token)
    fast = open_with_subprotocol(live_ws, "/ws/notifications/", token, max_queue=None)
    try:
        with fast:
            welcomed(fast)
            received: list[int] = []
            total = 3000  # 12 MB: more than the stalled socket's kernel buffers hold

            def read_fast() -> None:
                while len(received) < total:
                    received.append(receive_json(fast, timeout=30)["n"])

            reader = threading.Thread(target=read_fast)
            reader.start()
            padding = "x" * 4000
            for n in range(total):
                publish_text(groups.user_notifications(user.pk), dumps({"n": n, "pad": padding}))
                if n % 16 == 15:
                    time.sleep(0.01)  # a steady stream that a reading client keeps up with
            reader.join(timeout=60)
            # Every event, in order, for the client that reads.
            assert received == list(range(total))

        # The stalled one, once it reads again, finds what fitted in the buffers,
        # in order, and then the overflow close: it must resync over REST.
        assert slow.drain() == 4408
        events = [json.loads(text) for text in slow.messages]
        assert events[0]["type"] == "welcome"
        numbers = [event["n"] for event in events[1:]]
        assert numbers == list(range(len(numbers)))
        assert 0 < len(numbers) < total
    finally:
        slow.close()


def test_shipment_positions_are_throttled_and_the_latest_wins(
    live_ws: LiveServer, settings: Any
) -> None:
    settings.EMPORIUM_REALTIME_POSITION_INTERVAL_SECONDS = 0.5
    owner = UserFactory()
    shipment = _shipment_of(owner)
    group = groups.shipment(shipment.pk)
    with open_with_subprotocol(live_ws, f"/ws/shipments/{shipment.pk}/", token_for(owner)) as ws:
        welcomed(ws)
        received: list[int] = []
        started = time.monotonic()
        for n in range(40):  # 40 updates in 2 s: 20 per second offered
            publish_text(group, dumps({"type": "position", "n": n}))
            time.sleep(0.05)
        offered_for = time.monotonic() - started
        try:
            while True:
                received.append(receive_json(ws, timeout=1.5)["n"])
        except TimeoutError:
            pass
    # At most one per 0.5 s (plus the first at once), never out of order, and the
    # newest update is always the last one delivered.
    assert len(received) <= int(offered_for / 0.5) + 2
    assert len(received) >= 2
    assert received == sorted(received)
    assert received[-1] == 39


def test_telemetry_reaches_the_shipment_watcher_and_the_dashboard(live_ws: LiveServer) -> None:
    owner, staff = UserFactory(), StaffFactory()
    device, device_token = make_device()
    order = OrderFactory(user=owner, order_status=OrderStatus.PAID)
    shipment = delivery_services.shipment_create(order=order, device=device)
    watcher = open_with_subprotocol(live_ws, f"/ws/shipments/{shipment.pk}/", token_for(owner))
    dashboard = open_with_subprotocol(live_ws, "/ws/dashboard/", token_for(staff))
    with watcher, dashboard:
        welcomed(watcher)
        welcomed(dashboard)
        minute = timezone.now().replace(second=0, microsecond=0)
        older = minute - timedelta(minutes=2)
        newer = minute - timedelta(minutes=1)
        # Sent newest first: the newest by time wins, not the last in the body.
        response = post_json(
            device_client(device_token),
            [point(device, newer, 52.5, 13.5), point(device, older, 52.0, 13.0)],
        )
        assert response.status_code == 200, response.content
        services.positions_flush()  # or the once-a-second flusher, whichever runs first

        position = receive_json(watcher)
        figures = receive_event(dashboard, "positions")

    expected = {
        "device_id": device.pk,
        "shipment_id": shipment.pk,
        "latitude": 52.5,
        "longitude": 13.5,
        "timestamp": newer.isoformat(),
    }
    assert position == {"type": "position", **expected}
    assert figures == {"type": "positions", "positions": [expected]}
