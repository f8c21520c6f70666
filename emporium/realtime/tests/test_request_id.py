"""A WebSocket session has one request id: the handshake's, or one of its own."""

from __future__ import annotations

import re
import urllib.request

import pytest

from emporium.core.tests.factories import UserFactory
from emporium.observability.tests.logs import logs_captured
from emporium.realtime.tests.conftest import (
    LiveServer,
    close_code,
    open_with_subprotocol,
    token_for,
    welcomed,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_handshake_id_names_the_session_in_its_answer_and_its_lines(
    live_ws: LiveServer,
) -> None:
    user = UserFactory()
    with (
        logs_captured() as logs,
        open_with_subprotocol(
            live_ws,
            "/ws/orders/",
            token_for(user),
            additional_headers={"X-Request-ID": "ws-session-7"},
        ) as socket,
    ):
        welcomed(socket)
        assert socket.response is not None
        assert socket.response.headers["X-Request-ID"] == "ws-session-7"

    opened = [line for line in logs.lines() if line["event"] == "websocket opened"]
    assert [(line["request_id"], line["stream"]) for line in opened] == [("ws-session-7", "orders")]


def test_a_session_without_a_good_id_gets_its_own(live_ws: LiveServer) -> None:
    ids = []
    for header in ({}, {"X-Request-ID": "bad id\twith tab"}):
        with open_with_subprotocol(
            live_ws, "/ws/orders/", "not-a-jwt", additional_headers=header
        ) as socket:
            assert socket.response is not None
            ids.append(socket.response.headers["X-Request-ID"])
            assert close_code(socket) == 4401

    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)
    assert ids[0] != ids[1]


def test_http_through_the_asgi_application_keeps_the_id(live_ws: LiveServer) -> None:
    url = live_ws.http("/api/products/")
    request = urllib.request.Request(url, headers={"X-Request-ID": "asgi-req-3"})  # noqa: S310
    with logs_captured() as logs, urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.headers["X-Request-ID"] == "asgi-req-3"

    assert [(line["request_id"], line["status"]) for line in logs.access()] == [("asgi-req-3", 200)]
