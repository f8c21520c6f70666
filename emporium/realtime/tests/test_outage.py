"""Redis going away under a real uvicorn process serving config.asgi.

The server is a separate process (as in production), on the test database
and on a private redis-server that the test kills and starts again on the
same port. While Redis is down the process must keep answering HTTP, must
not spin, and must stop promptly on SIGTERM; once Redis is back, pushes
reach sockets again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from emporium.core.tests.factories import UserFactory
from emporium.realtime import groups, transport_healthy
from emporium.realtime.tests.conftest import (
    STOPPED_BY_SIGTERM,
    AsgiServer,
    close_code,
    receive_json,
    token_for,
)
from emporium.realtime.transport import HUB, channel_for, counts_key
from tests.support.processes import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)


def _open(server: AsgiServer, path: str, token: str) -> ClientConnection:
    return connect(server.url(path), subprotocols=["emporium.jwt", token], open_timeout=5)  # type: ignore[list-item]


def _welcomed_socket(server: AsgiServer, path: str, token: str) -> ClientConnection | None:
    """A socket past its welcome, or None if the server refused or closed it."""
    try:
        socket = _open(server, path, token)
    except (OSError, InvalidHandshake, TimeoutError):
        return None
    try:
        if receive_json(socket, timeout=5)["type"] == "welcome":
            return socket
    except (ConnectionClosed, TimeoutError):
        pass
    socket.close()
    return None


def _reconnected(
    server: AsgiServer, path: str, token: str, timeout: float = 30.0
) -> ClientConnection:
    """Reconnects the way a client does after a 1012, until a socket is welcomed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        socket = _welcomed_socket(server, path, token)
        if socket is not None:
            return socket
        time.sleep(0.5)
    raise AssertionError(f"no socket was welcomed again:\n{server.log()}")


def _push_until_received(
    socket: ClientConnection, publish: Callable[[int], None], timeout: float = 20.0
) -> dict[str, object]:
    """Publishes numbered events until one arrives (a subscription may still be on its way)."""
    deadline = time.monotonic() + timeout
    number = 0
    while time.monotonic() < deadline:
        number += 1
        publish(number)
        try:
            return receive_json(socket, timeout=0.5)
        except TimeoutError:
            continue
    raise AssertionError("no push arrived")


def test_a_redis_outage_neither_hangs_nor_spins_the_server_and_pushes_resume(
    asgi_server: AsgiServer, private_redis: RedisServer
) -> None:
    user = UserFactory()
    token = token_for(user)
    group = groups.user_orders(user.pk)
    publisher = redis.Redis.from_url(private_redis.url(), socket_connect_timeout=1)

    def publish(number: int) -> None:
        publisher.publish(channel_for(private_redis.url(), group), json.dumps({"n": number}))

    before = _welcomed_socket(asgi_server, "/ws/orders/", token)
    assert before is not None, asgi_server.log()
    with before:
        assert "n" in _push_until_received(before, publish)

        private_redis.kill()

        # Events published while the subscription is down are lost: the socket is
        # told to reconnect and resync.
        assert close_code(before) == 1012

    # During the outage the process answers HTTP at once and does not spin.
    cpu_at_start = asgi_server.cpu_seconds()
    started = time.monotonic()
    answered = 0
    while time.monotonic() - started < 3.0:
        status, body = asgi_server.get("/api/auth/me/", token, timeout=2)
        assert status == 200, body
        assert json.loads(body)["id"] == user.pk
        answered += 1
        time.sleep(0.25)
    spent = asgi_server.cpu_seconds() - cpu_at_start
    elapsed = time.monotonic() - started
    assert answered >= 5
    # A listener looping without yielding burns the whole interval (about 3 s).
    assert spent < elapsed / 3, (spent, elapsed)

    # Readiness names what is lost; the cache is required by default, so the
    # process is not ready (and answers at once rather than hanging on Redis).
    status, body = asgi_server.get("/health/ready", token, timeout=5)
    checks = json.loads(body)["error"]["details"]["checks"]
    assert status == 503, body
    assert checks["database"] == "ok"
    assert checks["realtime"].startswith("failed:")
    assert checks["cache"].startswith("failed:")

    # A socket opened during the outage is not promised events nobody can deliver.
    with _open(asgi_server, "/ws/orders/", token) as during:
        assert close_code(during) == 1012

    private_redis.start()  # the same port

    # Clients reconnect (with backoff) and pushes reach them again.
    after = _reconnected(asgi_server, "/ws/orders/", token)
    with after as socket:
        assert "n" in _push_until_received(socket, publish)
        status, body = asgi_server.get("/health/ready", token, timeout=5)
        assert (status, json.loads(body)["status"]) == (200, "ready"), body

        assert publisher.hlen(counts_key(private_redis.url())) == 1  # this process counts

        # SIGTERM with a socket open: the process stops promptly, and cleanly: the
        # lifespan's shutdown took it out of the connection count.
        asgi_server.process.send_signal(signal.SIGTERM)
        asgi_server.process.wait(timeout=10)
    assert asgi_server.process.returncode in STOPPED_BY_SIGTERM, asgi_server.log()
    assert publisher.hlen(counts_key(private_redis.url())) == 0


def test_sigterm_during_a_redis_outage_stops_the_server(
    asgi_server: AsgiServer, private_redis: RedisServer
) -> None:
    user = UserFactory()
    socket = _welcomed_socket(asgi_server, "/ws/notifications/", token_for(user))
    assert socket is not None, asgi_server.log()
    with socket:
        private_redis.kill()
        assert close_code(socket) == 1012
    time.sleep(2.0)  # past the first failed attempts to reconnect

    asgi_server.process.send_signal(signal.SIGTERM)
    asgi_server.process.wait(timeout=10)
    assert asgi_server.process.returncode in STOPPED_BY_SIGTERM, asgi_server.log()


def test_transport_health_follows_the_redis_connection(
    private_redis: RedisServer, settings: Any
) -> None:
    settings.EMPORIUM_REALTIME_REDIS_URL = private_redis.url()

    async def eventually(expected: bool) -> bool:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if transport_healthy() is expected:
                return True
            await asyncio.sleep(0.05)
        return False

    async def scenario() -> list[bool]:
        await HUB.bind()
        seen = [transport_healthy()]
        await asyncio.to_thread(private_redis.kill)
        seen.append(await eventually(False))
        await asyncio.to_thread(private_redis.start)
        seen.append(await eventually(True))
        await HUB.shutdown()
        return seen

    assert transport_healthy()  # no transport started in this process: nothing is down
    assert asyncio.run(scenario()) == [True, True, True]
