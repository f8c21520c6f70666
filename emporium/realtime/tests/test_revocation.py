"""A user's sockets close (4401) when the account is deactivated or deleted, or signs out.

Each test keeps a socket of the user open and does what an attacker would
count on not closing it: the account is switched off while the socket stays
subscribed. With REDIS_URL set the revocation crosses Redis pub/sub; one test
runs it across processes, to a separate uvicorn process.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient
from websockets.sync.client import ClientConnection

from emporium.accounts import services as account_services
from emporium.accounts.models import User
from emporium.core.tests.factories import StaffFactory, UserFactory, client_for
from emporium.realtime import groups, user_sockets_revoke
from emporium.realtime.hub import BufferPolicy, Connection, Hub, LocalTransport
from emporium.realtime.tests.conftest import (
    AsgiServer,
    LiveServer,
    close_code,
    open_with_subprotocol,
    receive_json,
    token_for,
    welcomed,
)
from emporium.realtime.transport import dumps, publish_text
from tests.support.processes import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple 42"


def _superuser() -> User:
    return User.objects.create_superuser(
        username="root-admin", email="root@example.com", password=PASSWORD
    )


def _still_delivered(socket: ClientConnection, user: User) -> None:
    """The socket of a user nobody revoked still gets its pushes."""
    publish_text(groups.user_notifications(user.pk), dumps({"still": "open"}))
    assert receive_json(socket) == {"still": "open"}


def test_deactivation_through_the_users_api_closes_every_socket_of_the_user(
    live_ws: LiveServer,
) -> None:
    victim, bystander = UserFactory(), UserFactory()
    orders = open_with_subprotocol(live_ws, "/ws/orders/", token_for(victim))
    notifications = open_with_subprotocol(live_ws, "/ws/notifications/", token_for(victim))
    other = open_with_subprotocol(live_ws, "/ws/notifications/", token_for(bystander))
    with orders, notifications, other:
        for socket in (orders, notifications, other):
            welcomed(socket)

        response = client_for(_superuser()).patch(
            f"/api/users/{victim.pk}/", {"is_active": False}, format="json"
        )
        assert response.status_code == 200, response.content

        assert close_code(orders) == 4401
        assert close_code(notifications) == 4401
        _still_delivered(other, bystander)
    # And the token cannot open a new one.
    with open_with_subprotocol(live_ws, "/ws/orders/", token_for(victim)) as again:
        assert close_code(again) == 4401


def test_deactivation_in_the_django_admin_closes_the_staff_dashboard(
    live_ws: LiveServer,
) -> None:
    staff = StaffFactory()
    with open_with_subprotocol(live_ws, "/ws/dashboard/", token_for(staff)) as dashboard:
        welcomed(dashboard)
        browser = Client()
        browser.force_login(_superuser())
        page = browser.get(f"/admin/accounts/user/{staff.pk}/change/")
        assert page.status_code == 200
        form = page.context["adminform"].form
        data = {
            name: value
            for name, value in form.initial.items()
            if value is not None and name not in {"password", "groups", "user_permissions"}
        }
        for name in ("last_login", "date_joined", "created_at", "updated_at"):
            data.pop(name, None)
        data.pop("is_active")  # the box unticked
        response = browser.post(f"/admin/accounts/user/{staff.pk}/change/", data)
        assert response.status_code == 302, response.content[:2000]
        staff.refresh_from_db()
        assert staff.is_active is False

        assert close_code(dashboard) == 4401


def test_deleting_the_user_in_the_django_admin_closes_their_sockets(live_ws: LiveServer) -> None:
    victim, bystander = UserFactory(), UserFactory()
    token = token_for(victim)
    mine = open_with_subprotocol(live_ws, "/ws/notifications/", token)
    other = open_with_subprotocol(live_ws, "/ws/notifications/", token_for(bystander))
    with mine, other:
        welcomed(mine)
        welcomed(other)
        browser = Client()
        browser.force_login(_superuser())
        response = browser.post(f"/admin/accounts/user/{victim.pk}/delete/", {"post": "yes"})
        assert response.status_code == 302
        assert not User.objects.filter(pk=victim.pk).exists()

        assert close_code(mine) == 4401
        _still_delivered(other, bystander)
    # A token that outlived its account opens nothing.
    with open_with_subprotocol(live_ws, "/ws/orders/", token) as again:
        assert close_code(again) == 4401


def test_deleting_the_user_through_the_service_closes_their_sockets(live_ws: LiveServer) -> None:
    victim = UserFactory()
    with open_with_subprotocol(live_ws, "/ws/orders/", token_for(victim)) as socket:
        welcomed(socket)
        account_services.user_delete(user=victim)
        assert close_code(socket) == 4401


def test_signing_out_closes_the_sockets_opened_with_that_sign_in(live_ws: LiveServer) -> None:
    User.objects.create_user(username="signing-out", email="out@example.com", password=PASSWORD)
    api = APIClient()
    tokens = api.post(
        "/api/auth/login/", {"username": "signing-out", "password": PASSWORD}, format="json"
    )
    assert tokens.status_code == 200, tokens.content
    access, refresh = tokens.json()["access"], tokens.json()["refresh"]
    with open_with_subprotocol(live_ws, "/ws/orders/", access) as socket:
        welcomed(socket)

        response = api.post("/api/auth/logout/", {"refresh": refresh}, format="json")
        assert response.status_code == 204, response.content

        assert close_code(socket) == 4401


def test_a_rolled_back_deactivation_closes_nothing(live_ws: LiveServer) -> None:
    user = UserFactory()
    with open_with_subprotocol(live_ws, "/ws/notifications/", token_for(user)) as socket:
        welcomed(socket)

        def deactivate_then_fail() -> None:
            with transaction.atomic():
                account_services.user_update_by_admin(
                    actor=StaffFactory(), user=user, is_active=False
                )
                raise RuntimeError("the request failed after the change")

        with pytest.raises(RuntimeError):
            deactivate_then_fail()
        user.refresh_from_db()
        assert user.is_active is True
        _still_delivered(socket, user)


def test_a_revocation_crosses_processes(
    asgi_server: AsgiServer, private_redis: RedisServer, settings: Any
) -> None:
    """A deactivation in this process closes the socket held by another server process."""
    settings.EMPORIUM_REALTIME_REDIS_URL = private_redis.url()
    user = UserFactory()
    with open_with_subprotocol(asgi_server, "/ws/orders/", token_for(user)) as socket:
        welcomed(socket)
        account_services.user_update_by_admin(actor=StaffFactory(), user=user, is_active=False)
        assert close_code(socket) == 4401


def test_the_hub_closes_only_the_revoked_users_connections() -> None:
    """The hub's part, on the in-process transport: 4401 for the user named, no one else."""
    sent: dict[int, list[dict[str, Any]]] = {7: [], 8: []}

    def sender(user_id: int) -> Any:
        async def send(message: dict[str, Any]) -> None:
            sent[user_id].append(message)

        return send

    async def scenario() -> None:
        hub = Hub(transport_factory=LocalTransport)
        policy = BufferPolicy(capacity=4, drop_oldest=True)
        for user_id in (7, 8):
            connection = Connection(hub=hub, send=sender(user_id), policy=policy, user_id=user_id)
            await hub.register(connection, [groups.DASHBOARD])
            connection.start()
        hub.deliver(groups.REVOCATIONS, json.dumps({"user_id": 7}))
        hub.deliver(groups.REVOCATIONS, "not json")  # ignored, logged
        hub.deliver(groups.DASHBOARD, "figures")
        await asyncio.sleep(0.05)
        assert hub.count == 1
        assert set(hub.users) == {8}
        await hub.shutdown()

    asyncio.run(scenario())
    assert sent[7] == [{"type": "websocket.close", "code": 4401}]
    assert sent[8] == [{"type": "websocket.send", "text": "figures"}]


def test_user_sockets_revoke_outside_a_transaction_publishes_at_once(live_ws: LiveServer) -> None:
    user = UserFactory()
    with open_with_subprotocol(live_ws, "/ws/notifications/", token_for(user)) as socket:
        welcomed(socket)
        user_sockets_revoke(user_id=user.pk)
        assert close_code(socket) == 4401
