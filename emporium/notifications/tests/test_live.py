"""Live pushes on /ws/notifications/: after commit, never after a rollback, same ids as REST."""

from __future__ import annotations

import pytest
from django.db import transaction

from emporium.core.tests.factories import StaffFactory, UserFactory, client_for
from emporium.notifications.broadcasts import broadcast_batch_run
from emporium.notifications.services import Message, notifications_send
from emporium.realtime.tests.conftest import (
    LiveServer,
    live_ws,  # noqa: F401 - the fixture
    open_with_subprotocol,
    receive_json,
    token_for,
    welcomed,
)


def shipped(user, key: str) -> Message:  # type: ignore[no-untyped-def]
    return Message(
        recipient_id=user.pk, kind="order_shipped", title=f"Order {key} has shipped", dedup_key=key
    )


def test_a_notification_is_pushed_after_commit_and_matches_the_resync(
    live_ws: LiveServer,  # noqa: F811
) -> None:
    customer, other = UserFactory(), UserFactory()
    with open_with_subprotocol(live_ws, "/ws/notifications/", token_for(customer)) as socket:
        welcomed(socket)

        def send_then_fail() -> None:
            with transaction.atomic():
                notifications_send(messages=[shipped(customer, "rolled-back")])
                raise RuntimeError("the request failed after the change")

        with pytest.raises(RuntimeError):
            send_then_fail()
        notifications_send(messages=[shipped(other, "theirs")])
        notifications_send(messages=[shipped(customer, "kept")])

        pushed = receive_json(socket)
        assert pushed["title"] == "Order kept has shipped"
        with pytest.raises(TimeoutError):
            socket.recv(timeout=0.5)

    body = client_for(customer).get("/api/notifications/?since=0").json()
    assert body == {"results": [pushed], "has_more": False}


def test_a_broadcast_batch_pushes_to_connected_recipients_only(
    live_ws: LiveServer,  # noqa: F811
) -> None:
    staff = StaffFactory()
    connected, offline = UserFactory(), UserFactory()
    with open_with_subprotocol(live_ws, "/ws/notifications/", token_for(connected)) as socket:
        welcomed(socket)
        progress = (
            client_for(staff)
            .post(
                "/api/notifications/broadcasts/",
                {
                    "title": "Hello",
                    "body": "Everyone",
                    "channels": ["in_app"],
                    "audience": {"type": "all"},
                },
                format="json",
            )
            .json()
        )
        broadcast_batch_run(broadcast_id=progress["id"], number=0)
        pushed = receive_json(socket)
    assert (pushed["kind"], pushed["title"], pushed["body"]) == ("broadcast", "Hello", "Everyone")
    [row] = client_for(connected).get("/api/notifications/").json()["results"]
    assert row["id"] == pushed["id"]
    assert client_for(offline).get("/api/notifications/unread-count/").json()["unread"] == 1


def test_broadcast_progress_reaches_the_dashboard(live_ws: LiveServer) -> None:  # noqa: F811
    staff = StaffFactory()
    UserFactory()
    with open_with_subprotocol(live_ws, "/ws/dashboard/", token_for(staff)) as dashboard:
        welcomed(dashboard)
        progress = (
            client_for(staff)
            .post(
                "/api/notifications/broadcasts/",
                {"title": "Hi", "body": "All", "channels": ["in_app"], "audience": {"type": "all"}},
                format="json",
            )
            .json()
        )
        broadcast_batch_run(broadcast_id=progress["id"], number=0)
        while (message := receive_json(dashboard))["type"] != "notification_broadcast":
            pass  # the dashboard's figures, sent every second
    assert message["broadcast"]["id"] == progress["id"]
    assert (message["broadcast"]["status"], message["broadcast"]["recipients_done"]) == (
        "completed",
        2,
    )
