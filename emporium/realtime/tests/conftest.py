"""A real ASGI server (uvicorn, real sockets) for the WebSocket tests, and clients for it.

``live_ws`` runs config.asgi in a thread of the test process, so it sees the
test database and the test's settings; with REDIS_URL set every event still
goes through Redis pub/sub (the transport does not know it shares a process).
``asgi_server`` is uvicorn as its own process, as in production, on the test
database and a private Redis the test may stop.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from django.db import connections
from rest_framework_simplejwt.tokens import AccessToken
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from emporium.accounts.models import User
from tests.support.processes import (
    ROOT,
    RedisServer,
    database_url_for_current_test_db,
    free_port,
    wait_until,
)


@dataclass
class LiveServer:
    port: int

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def live_ws(transactional_db: None, settings: Any) -> Iterator[LiveServer]:
    from config.asgi import application

    settings.EMPORIUM_REALTIME_AUTH_TIMEOUT_SECONDS = 1.0
    # Threads of the server's thread pool open their own database connections;
    # closing them after each use lets the test database be flushed and dropped.
    database = connections.settings["default"]
    saved_max_age = database.get("CONN_MAX_AGE", 0)
    database["CONN_MAX_AGE"] = 0
    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test ASGI server did not start")
        time.sleep(0.02)
    yield LiveServer(port=port)
    server.should_exit = True
    thread.join(timeout=15)
    database["CONN_MAX_AGE"] = saved_max_age


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# uvicorn shuts down gracefully, then re-raises the signal it caught.
STOPPED_BY_SIGTERM = (0, -signal.SIGTERM)


@dataclass
class AsgiServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def get(self, path: str, token: str, timeout: float) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def answers(self) -> bool:
        try:
            status, _ = self.get("/api/auth/me/", "no-token", timeout=1)
        except OSError:
            return False
        return status == 401

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def asgi_server(
    database_url: str, private_redis: RedisServer, tmp_path: Path
) -> Iterator[AsgiServer]:
    """uvicorn on config.asgi, with REDIS_URL pointing at the private Redis."""
    port = free_port()
    log_path = tmp_path / "uvicorn.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url_for_current_test_db(),
        "REDIS_URL": private_redis.url(),
        "DATABASE_CONN_MAX_AGE": "0",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ws",
                "websockets-sansio",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = AsgiServer(process=process, port=port, log_path=log_path)
    try:
        if not wait_until(lambda: server.answers() or process.poll() is not None, timeout=60):
            raise RuntimeError(f"uvicorn did not start:\n{server.log()}")
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited:\n{server.log()}")
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def token_for(user: User, *, expired: bool = False) -> str:
    token = AccessToken.for_user(user)
    if expired:
        token.set_exp(lifetime=-timedelta(seconds=30))
    return str(token)


def open_with_subprotocol(
    server: LiveServer, path: str, token: str, **options: Any
) -> ClientConnection:
    return connect(
        server.url(path), subprotocols=["emporium.jwt", token], open_timeout=10, **options
    )


def receive_json(connection: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    message = json.loads(connection.recv(timeout=timeout))
    assert isinstance(message, dict)
    return message


def receive_event(
    connection: ClientConnection, event_type: str, timeout: float = 10.0
) -> dict[str, Any]:
    """The next message of ``event_type``, passing over the others.

    The dashboard group also carries the once-a-second ``metrics`` event,
    which a server process that has answered an HTTP request publishes.
    """
    deadline = time.monotonic() + timeout
    while True:
        message = receive_json(connection, timeout=max(0.0, deadline - time.monotonic()))
        if message.get("type") == event_type:
            return message


def welcomed(connection: ClientConnection) -> dict[str, Any]:
    message = receive_json(connection)
    assert message["type"] == "welcome", message
    return message


def close_code(connection: ClientConnection, timeout: float = 10.0) -> int | None:
    """Reads until the server closes; the code it sent."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            connection.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        return None
    return None


def slow_socket(port: int) -> socket.socket:
    """A TCP socket with a tiny receive buffer, so a client that stops reading stalls soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


class StalledClient:
    """A WebSocket client on a bare socket that reads only when told to.

    Library clients keep reading in the background; this one leaves the
    bytes in its (tiny) kernel buffer, so the server really cannot write to
    it, until :meth:`drain` reads everything that arrived.
    """

    def __init__(self, server: LiveServer, path: str, token: str) -> None:
        from websockets.client import ClientProtocol
        from websockets.typing import Subprotocol
        from websockets.uri import parse_uri

        self.sock = slow_socket(server.port)
        self.protocol = ClientProtocol(
            parse_uri(server.url(path)),
            subprotocols=[Subprotocol("emporium.jwt"), Subprotocol(token)],
            max_size=None,
        )
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        self.messages: list[str] = []
        while not self.messages:  # the handshake, then the welcome message
            self._read_some(timeout=10)

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.sock.sendall(chunk)

    def _read_some(self, timeout: float) -> bool:
        from websockets.frames import Frame, Opcode

        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            self.protocol.receive_eof()
            return False
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.messages.append(event.data.decode())
        self._flush()  # answers pings and the close frame
        return True

    def drain(self, timeout: float = 30.0) -> int | None:
        """Reads until the server closes; returns the close code it sent."""
        deadline = time.monotonic() + timeout
        while self.protocol.close_rcvd is None and time.monotonic() < deadline:
            try:
                if not self._read_some(timeout=max(0.01, deadline - time.monotonic())):
                    break
            except TimeoutError:
                break
        close = self.protocol.close_rcvd
        return close.code if close is not None else None

    def close(self) -> None:
        self.sock.close()
