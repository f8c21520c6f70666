"""Readiness under real outages: an app server on the production settings reaches
PostgreSQL and RabbitMQ through TCP proxies the test cuts, and a Redis of its own
that the test kills. /readyz must answer quickly each time, name what failed, and
come back by itself when the dependency does; /healthz never depends on any of them.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings.jwt_keys import jwt_key_entry
from conftest import require_service
from tests.support.processes import (
    RedisServer,
    TcpProxy,
    database_url_for_current_test_db,
    free_port,
    stop_process,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
# A probe that fails must say so well within an orchestrator's probe timeout.
ANSWER_WITHIN_SECONDS = 3.5


def _through(url: str, proxy: TcpProxy) -> str:
    parts = urllib.parse.urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{proxy.url_host}" if credentials else proxy.url_host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _target(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 0


class Readiness:
    def __init__(self, base: str) -> None:
        self.base = base

    def ask(self) -> tuple[int, dict[str, Any], float]:
        started = time.monotonic()
        response = httpx.get(f"{self.base}/readyz", timeout=10)
        return response.status_code, response.json(), time.monotonic() - started

    def becomes(self, predicate: Callable[[int, dict[str, Any]], bool], timeout: float) -> bool:
        def check() -> bool:
            status, body, _ = self.ask()
            return predicate(status, body)

        return wait_until(check, timeout=timeout)


@pytest.fixture
def app_server(
    tmp_path: Path, tcp_proxy: Callable[[str, int], TcpProxy]
) -> Iterator[tuple[Readiness, TcpProxy, RedisServer, TcpProxy]]:
    broker_url = require_service("BROKER_URL")
    database_url = database_url_for_current_test_db()
    database = tcp_proxy(*_target(database_url))
    broker = tcp_proxy(*_target(broker_url))
    redis = RedisServer()
    redis.start()
    port = free_port()
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DATABASE_URL": _through(database_url, database),
        "REDIS_URL": redis.url(),
        "BROKER_URL": _through(broker_url, broker),
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "JWT_PRIVATE_KEYS": jwt_key_entry("readiness"),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    log_path = tmp_path / "granian.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - the project's own launcher
            [
                *(sys.executable, "-m", "emporium.core.servers", "granian", "--interface", "wsgi"),
                *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
                "config.wsgi:application",
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return process.poll() is not None

    try:
        assert wait_until(answers, timeout=60), log_path.read_text(errors="replace")
        assert process.poll() is None, log_path.read_text(errors="replace")
        yield Readiness(base), database, redis, broker
    finally:
        stop_process(process)
        redis.kill()


@pytest.mark.django_db(transaction=True)
def test_readiness_follows_real_outages_and_recoveries(
    app_server: tuple[Readiness, TcpProxy, RedisServer, TcpProxy],
) -> None:
    readiness, database, redis, broker = app_server
    healthz = f"{readiness.base}/healthz"

    status, body, _ = readiness.ask()
    assert (status, body["status"]) == (200, "ready"), body
    assert body["checks"] == {"database": "ok", "cache": "ok", "broker": "ok", "realtime": "ok"}

    # The database goes: not ready, and the answer says which, quickly.
    database.cut()
    status, body, elapsed = readiness.ask()
    assert status == 503, body
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["details"]["checks"]["database"].startswith("failed: ")
    assert elapsed < ANSWER_WITHIN_SECONDS
    assert httpx.get(healthz, timeout=5).status_code == 200  # the process still answers
    database.restore()
    assert readiness.becomes(lambda status, body: status == 200, timeout=15)

    # Redis goes: not ready (required by default), naming the cache.
    redis.kill()
    status, body, elapsed = readiness.ask()
    assert status == 503, body
    assert body["error"]["details"]["checks"]["cache"].startswith("failed: ")
    assert body["error"]["details"]["checks"]["database"] == "ok"
    assert elapsed < ANSWER_WITHIN_SECONDS
    redis.start()
    assert readiness.becomes(
        lambda status, body: (status, body.get("status")) == (200, "ready"), timeout=15
    )

    # The broker goes: not ready, naming it; events wait in the outbox meanwhile.
    broker.cut()
    status, body, elapsed = readiness.ask()
    assert status == 503, body
    assert body["error"]["details"]["checks"]["broker"].startswith("failed: ")
    assert elapsed < ANSWER_WITHIN_SECONDS
    broker.restore()
    assert readiness.becomes(
        lambda status, body: (status, body.get("status")) == (200, "ready"), timeout=15
    )
