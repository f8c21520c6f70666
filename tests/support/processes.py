"""Real processes and network faults for tests: no mocks of the things under test.

* ``payment_provider`` - the simulator from ``simulators/`` as a separate
  process on a free port, with settings pointed at it;
* ``tcp_proxy`` - a TCP forwarder that a test can cut and restore, to take a
  real server (RabbitMQ, SMTP) away from the code under test without stopping
  the shared server itself;
* ``start_worker`` - a real ``celery worker`` process on the test database.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deploy.cluster.faultproxy import Route as TcpProxy

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 20.0, interval: float = 0.05
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- payment provider simulator ---------------------------------------------------


@dataclass
class ProviderProcess:
    url: str
    process: subprocess.Popen[bytes]
    webhook_secret: str

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - local test server
            self.url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def control(self, **settings: Any) -> dict[str, Any]:
        return self._call("POST", "/v1/control", settings)

    def ledger(self) -> dict[str, Any]:
        return self._call("GET", "/v1/charges")

    def charges_for(self, reference: str) -> list[dict[str, Any]]:
        return [charge for charge in self.ledger()["charges"] if charge["reference"] == reference]

    def alive(self) -> bool:
        try:
            self._call("GET", "/healthz")
        except OSError:
            return False
        return True


def start_provider(
    *, port: int | None = None, extra: list[str] | None = None, secret: str | None = None
) -> ProviderProcess:
    port = port or free_port()
    # A real-strength key (worker processes on the embedded profile refuse weak ones),
    # handed over in the environment as `make provider` does: a URL-safe token may
    # begin with "-", which a command line would take for an option.
    secret = secret or secrets.token_urlsafe(32)
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "simulators.payment_provider",
            "--port",
            str(port),
            "--latency-ms",
            "0",
            "--jitter-ms",
            "0",
            *(extra or []),
        ],
        cwd=ROOT,
        env={**os.environ, "PAYMENT_WEBHOOK_SECRET": secret},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    provider = ProviderProcess(
        url=f"http://127.0.0.1:{port}", process=process, webhook_secret=secret
    )
    started = wait_until(provider.alive, timeout=15)
    if not started:
        process.kill()
        process.wait(timeout=5)
    log.seek(0)
    said = log.read().decode(errors="replace").strip()
    log.close()
    if not started:
        raise RuntimeError(f"the payment provider simulator did not start: {said[-2000:]}")
    return provider


def stop_process(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def _provider_process() -> Iterator[ProviderProcess]:
    provider = start_provider()
    yield provider
    stop_process(provider.process)


@pytest.fixture
def payment_provider(
    _provider_process: ProviderProcess, settings: Any
) -> Iterator[ProviderProcess]:
    """The simulator, reset to a healthy state, with settings pointing at it."""
    from emporium.payments.gateway import provider_breaker

    if not _provider_process.alive():  # a test may have stopped it
        raise RuntimeError("payment provider simulator died")
    # Reset too: payment ids (hence idempotency keys and references) repeat from
    # one test to the next when the database rolls back, and must not meet the
    # answers the simulator kept for an earlier test.
    _provider_process.control(latency_ms=0, jitter_ms=0, failure_rate=0, outage=False, reset=True)
    settings.PAYMENT_PROVIDER_URL = _provider_process.url
    settings.PAYMENT_WEBHOOK_SECRET = _provider_process.webhook_secret
    settings.PAYMENT_PROVIDER_TIMEOUT_SECONDS = 2.0
    provider_breaker.cache_clear()
    provider_breaker().close()
    yield _provider_process
    provider_breaker().close()
    provider_breaker.cache_clear()


# -- a TCP proxy that can be cut ---------------------------------------------------
#
# The fault proxy `make cluster` runs (deploy/cluster/faultproxy.py), one route of
# it in the test's process: ``cut()``, ``restore()``, ``reset()``, ``url_host``.


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    proxies: list[TcpProxy] = []

    def make(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy("test", free_port(), (host, port))
        proxy.listen()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.cut()


# -- a real Celery worker ----------------------------------------------------------


def database_url_for_current_test_db() -> str:
    """The URL of the database the test is using (pytest-django's test_… database)."""
    from django.db import connection

    config = connection.settings_dict
    if connection.vendor != "postgresql":
        raise RuntimeError("a worker process needs the PostgreSQL test database")
    user = config["USER"] or "postgres"
    password = f":{config['PASSWORD']}" if config["PASSWORD"] else ""
    host = config["HOST"] or "127.0.0.1"
    port = config["PORT"] or 5432
    return f"postgres://{user}{password}@{host}:{port}/{config['NAME']}"


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int  # its /metrics (METRICS_PORT), 0 when told to serve none

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Starts ``celery worker`` processes against the test database and the real broker."""
    from django.conf import settings

    workers: list[WorkerProcess] = []

    def start(
        *,
        queues: str = "payments,email,default",
        extra_env: dict[str, str] | None = None,
        concurrency: int = 1,
        include: str | None = None,
    ) -> WorkerProcess:
        """``include``: extra task modules to import, e.g. test-only tasks."""
        log_path = tmp_path / f"worker-{len(workers)}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.embedded",
            "DATABASE_URL": database_url_for_current_test_db(),
            "BROKER_URL": settings.CELERY_BROKER_URL,
            "PAYMENT_PROVIDER_URL": settings.PAYMENT_PROVIDER_URL,
            "PAYMENT_WEBHOOK_SECRET": settings.PAYMENT_WEBHOOK_SECRET or "",
            # Each worker its own /metrics port: several run at once, here and in other runs.
            "METRICS_PORT": str(free_port()),
            **(extra_env or {}),
        }
        log = log_path.open("wb")
        process = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                queues,
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "INFO",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                # A node name of its own: two workers of one name on one broker (another
                # test run's) cannot both hold the remote-control queue, and one exits.
                "--hostname",
                f"test-{os.getpid()}-{len(workers)}-{secrets.token_hex(3)}@%h",
                *(["--include", include] if include else []),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() reaches the pool too
        )
        worker = WorkerProcess(
            process=process, log_path=log_path, metrics_port=int(env["METRICS_PORT"])
        )
        workers.append(worker)
        if not wait_until(
            lambda: "ready." in worker.log() or process.poll() is not None, timeout=60
        ):
            raise RuntimeError(f"worker did not start:\n{worker.log()}")
        if "ready." not in worker.log():
            # Dying after "ready." is not a failed start: a test's task may kill it.
            raise RuntimeError(f"worker exited:\n{worker.log()}")
        return worker

    yield start
    for worker in workers:
        worker.stop()


# -- a private Redis server --------------------------------------------------------


@dataclass
class RedisServer:
    """A ``redis-server`` of the test's own on a free port, to stop and start again.

    The shared Redis must never be stopped; a test that takes Redis away from
    the code under test uses one of these. Nothing is persisted.
    """

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except (redis.RedisError, OSError):
            return False

    def start(self) -> None:
        """Starts the server (again, on the same port after :meth:`kill`)."""
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed; this test needs a private one")
        self.process = subprocess.Popen(  # noqa: S603
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_until(self.answers, timeout=15):
            self.kill()
            raise RuntimeError("the private redis-server did not start")

    def kill(self) -> None:
        """Stops it at once (SIGKILL): clients see their connections reset."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.kill()
