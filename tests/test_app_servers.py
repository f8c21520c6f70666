"""The app servers as they are started for real: `make run`'s uvicorn, production's granian.

Both are started the one way every command starts them (``python -m
emporium.core.servers``), on the embedded profile with a SQLite file of the
test's own, and attacked over real sockets.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from emporium.observability.tests.metric_samples import scraped_value
from tests.support.processes import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[1]
HEADER_TIMEOUT_SECONDS = 2
LOGINS_PER_ADDRESS = 3
_CLEARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "BROKER_URL",
    "SECRET_KEY",
    "PAYMENT_WEBHOOK_SECRET",
    "DJANGO_SETTINGS_MODULE",
)


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.embedded",
            "SQLITE_PATH": str(tmp_path / "server.sqlite3"),
            "SECRETS_PATH": str(tmp_path / "secrets.json"),
            "THROTTLE_LOGIN_IP": f"{LOGINS_PER_ADDRESS}/min",
            "THROTTLE_LOGIN_ACCOUNT": "1000/min",
            "HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_SECONDS),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/api/schema/", timeout=2).close()  # noqa: S310
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def _migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("servers")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=ROOT,
        env=_environment(directory),
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )
    return directory


def _start(
    kind: str, directory: Path, *, workers: int = 1, environment: dict[str, str] | None = None
) -> Server:
    port = free_port()
    target = {"uvicorn": "config.asgi:application", "granian": "config.wsgi:application"}[kind]
    arguments = (
        [target, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        if kind == "uvicorn"
        else ["--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port), target]
    )
    log_path = directory / f"{kind}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - the project's own launcher
            [
                sys.executable,
                "-m",
                "emporium.core.servers",
                kind,
                "--workers",
                str(workers),
                *arguments,
            ],
            cwd=ROOT,
            env={**_environment(directory), **(environment or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", port, process, log_path)
    if not wait_until(lambda: _answers(server.url) or process.poll() is not None, timeout=60):
        stop_process(process)
        raise RuntimeError(f"{kind} did not start:\n{server.log()}")
    if process.poll() is not None:
        raise RuntimeError(f"{kind} exited:\n{server.log()}")
    return server


@pytest.fixture(params=["uvicorn", "granian"])
def app_server(request: pytest.FixtureRequest, _migrated: Path) -> Iterator[Server]:
    server = _start(request.param, _migrated)
    yield server
    stop_process(server.process)


@pytest.fixture
def make_run_server(_migrated: Path) -> Iterator[Server]:
    """uvicorn as `make run` starts it."""
    server = _start("uvicorn", _migrated)
    yield server
    stop_process(server.process)


def _login(url: str, forwarded_for: str, attempt: int) -> int:
    body = json.dumps({"username": f"nobody-{attempt}", "password": "wrong-password"}).encode()
    request = urllib.request.Request(  # noqa: S310 - a local test server
        url + "/api/auth/login/",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_forged_forwarded_for_does_not_reset_the_login_limit(make_run_server: Server) -> None:
    statuses = [
        _login(make_run_server.url, f"203.0.113.{attempt}", attempt)
        for attempt in range(LOGINS_PER_ADDRESS + 2)
    ]

    # Every attempt claims another address; all come from this one socket peer.
    assert statuses[:LOGINS_PER_ADDRESS] == [401] * LOGINS_PER_ADDRESS
    assert statuses[LOGINS_PER_ADDRESS:] == [429, 429]


def _trickle(port: int, closed_after: list[float], index: int, give_up: float) -> None:
    """Sends a request's headers one byte every half second until the server hangs up."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.settimeout(0.5)
        payload = b"GET /api/products/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
        for byte in payload:
            if time.monotonic() - started > give_up:
                return
            try:
                connection.sendall(bytes([byte]))
                if connection.recv(1024) == b"":
                    break
            except TimeoutError:
                continue  # nothing to read yet: the server still waits for us
            except OSError:
                break  # reset or broken pipe: closed too
        else:
            return
    closed_after[index] = time.monotonic() - started


def test_connections_trickling_headers_are_closed_within_the_header_timeout(
    app_server: Server,
) -> None:
    connections = 20
    give_up = HEADER_TIMEOUT_SECONDS + 20
    closed_after = [-1.0] * connections
    threads = [
        threading.Thread(target=_trickle, args=(app_server.port, closed_after, index, give_up))
        for index in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=give_up + 10)

    # Each was still sending when it was closed; none was kept until the test gave up.
    assert all(0 < closed < give_up for closed in closed_after), closed_after
    assert min(closed_after) >= HEADER_TIMEOUT_SECONDS - 0.5, closed_after
    assert app_server.process.poll() is None
    assert _answers(app_server.url)  # and the server still answers others


# -- metrics from several workers --------------------------------------------------------

ROUTE = "api/categories/"


def _counted_per_worker(directory: Path) -> dict[int, float]:
    """Requests to ROUTE each worker has written into its own counter file, by process id."""
    counts: dict[int, float] = {}
    for file in directory.glob("counter_*.db"):
        pid = int(file.stem.removeprefix("counter_"))
        for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(file)):
            _metric, name, labels, _help = json.loads(key)
            if name == "emporium_http_requests_total" and labels.get("route") == ROUTE:
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a local server
        return int(response.status)


@pytest.mark.parametrize("kind", ["granian", "uvicorn"])
def test_metrics_on_any_worker_add_up_every_workers_requests(
    kind: str,
    _migrated: Path,  # noqa: PT019 - its value is the migrated directory
    tmp_path: Path,
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    # A file a previous server start left: the launcher must empty the directory.
    stale = MmapedDict(str(directory / "counter_999999.db"))
    stale.write_value(
        mmap_key(
            "emporium_http_requests",
            "emporium_http_requests_total",
            ["route", "method", "status"],
            [ROUTE, "GET", "200"],
            "stale",
        ),
        1000.0,
        0.0,
    )
    stale.close()
    server = _start(
        kind,
        _migrated,
        workers=2,
        environment={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
    )
    try:
        sent = 0
        # New connections, several at once, until both workers have answered some.
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(40):
                statuses = list(pool.map(_get, [server.url + "/api/categories/"] * 16))
                assert statuses == [200] * 16
                sent += 16
                if len(_counted_per_worker(directory)) >= 2:
                    break
                time.sleep(0.1)
        # Each worker writes its counts into its file within a second (metrics.FLUSH_SECONDS).
        assert wait_until(lambda: sum(_counted_per_worker(directory).values()) == sent, timeout=10)
        per_worker = _counted_per_worker(directory)
        assert len(per_worker) == 2, per_worker  # both workers served and counted

        # Any worker's /metrics answers for both, exactly; scraped several times, so
        # both workers answer some of the scrapes.
        labels = {"route": ROUTE, "method": "GET", "status": "200"}
        for _ in range(6):
            assert scraped_value(
                server.url + "/metrics", "emporium_http_requests_total", **labels
            ) == float(sent)
            assert scraped_value(
                server.url + "/metrics",
                "emporium_http_request_duration_seconds_count",
                route=ROUTE,
                method="GET",
            ) == float(sent)
    finally:
        stop_process(server.process)


@pytest.mark.parametrize("kind", ["granian", "uvicorn"])
def test_every_line_a_server_writes_is_a_json_line(
    kind: str,
    _migrated: Path,  # noqa: PT019 - its value is the migrated directory
) -> None:
    """The server's own lines (startup, shutdown) and the application's, in one format."""
    server = _start(kind, _migrated, environment={"LOG_FORMAT": "json", "ACCESS_LOG": "true"})
    try:
        request = urllib.request.Request(  # noqa: S310 - the test's own server
            server.url + "/api/categories/", headers={"X-Request-ID": f"{kind}-lines-1"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.headers["X-Request-ID"] == f"{kind}-lines-1"
        assert wait_until(lambda: f"{kind}-lines-1" in server.log(), timeout=10), server.log()
    finally:
        stop_process(server.process)

    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    if kind == "granian":  # uvicorn is started at --log-level warning: it says nothing
        assert "_granian" in {line["logger"] for line in lines}  # the server's own lines
    [access] = [line for line in lines if line.get("request_id") == f"{kind}-lines-1"]
    assert (access["logger"], access["status"]) == ("emporium.access", 200)
