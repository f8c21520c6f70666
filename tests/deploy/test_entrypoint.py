"""deploy/docker/entrypoint.sh, the image's one entry point, run on the host.

The script under test runs for real under /bin/sh. Where a role would start a
server, a directory of stub executables (``python``, ``celery``) stands in for
the server on PATH: each records its argv, its process id and the signals it
gets. The ``migrate`` role also runs with the real interpreter against a
PostgreSQL database of its own, and ``healthcheck`` against a real HTTP server.
"""

from __future__ import annotations

import base64
import http.server
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from celery import Celery

from config.celery import TASK_QUEUES
from tests.support.deploy import ENTRYPOINT, ROOT, script_run
from tests.support.processes import free_port, stop_process, wait_until

# A stub server: writes its argv (one per line), then "pid <n>", then waits for
# SIGTERM when STUB_WAIT is set, recording it, as a server that shuts down cleanly.
STUB = """#!/bin/sh
{ echo "argv0 $(basename "$0")"; for a in "$@"; do echo "arg $a"; done; echo "pid $$"; \
  echo "settings $DJANGO_SETTINGS_MODULE"; echo "secret ${SECRET_KEY:-}"; } >> "$STUB_RECORD"
if [ -n "${STUB_WAIT:-}" ]; then
  trap 'echo "signal TERM" >> "$STUB_RECORD"; exit 0' TERM
  echo ready >> "$STUB_RECORD"
  while :; do sleep 0.05; done
fi
"""


@pytest.fixture
def stubs(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("python", "celery"):
        stub = directory / name
        stub.write_text(STUB)
        stub.chmod(0o755)
    return directory


def _environment(stubs: Path, record: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "STUB_RECORD": str(record),
        **extra,
    }


def _run(stubs: Path, record: Path, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return script_run(ENTRYPOINT, *argv, env=_environment(stubs, record, **extra))


def _recorded(record: Path) -> tuple[str, list[str]]:
    lines = record.read_text().splitlines()
    program = next(line.split(" ", 1)[1] for line in lines if line.startswith("argv0 "))
    return program, [line[4:] for line in lines if line.startswith("arg ")]


ROLES = {
    "web": (
        "python",
        [
            "-m",
            "emporium.core.servers",
            "granian",
            "--interface",
            "wsgi",
            "--host",
            "0.0.0.0",  # noqa: S104 - inside a container
            "--port",
            "8000",
            "--workers",
            "2",
            "--blocking-threads",
            "1",
            "config.wsgi:application",
        ],
    ),
    "ws": (
        "python",
        [
            "-m",
            "emporium.core.servers",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "0.0.0.0",  # noqa: S104
            "--port",
            "8001",
            "--workers",
            "1",
        ],
    ),
    # No -Q: the worker consumes every queue of the Celery configuration (below).
    "worker": ("celery", ["-A", "config", "worker", "--loglevel", "INFO"]),
    "beat": (
        "celery",
        ["-A", "config", "beat", "--loglevel", "INFO", "--schedule", "/tmp/celerybeat-schedule"],  # noqa: S108
    ),
    "relay": ("python", ["manage.py", "outbox_relay"]),
    "publisher": ("python", ["manage.py", "dashboard_publisher"]),
    "manage": ("python", ["manage.py", "check", "--deploy"]),
}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_runs_its_command_in_place_of_the_script(
    role: str, stubs: Path, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    extra = ["check", "--deploy"] if role == "manage" else []
    process = subprocess.Popen(  # noqa: S603
        ["/bin/sh", str(ENTRYPOINT), role, *extra],
        cwd=ROOT,
        env=_environment(stubs, record),
    )
    assert process.wait(timeout=30) == 0
    program, argv = _recorded(record)
    assert (program, argv) == ROLES[role]
    text = record.read_text()
    # exec: the server has the script's process id, so it gets the runtime's signals.
    assert f"pid {process.pid}" in text
    # Production unless the environment names another profile.
    assert "settings config.settings.production" in text


def test_the_environment_sets_ports_workers_queues_and_profile(stubs: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    done = _run(
        stubs,
        record,
        "web",
        "--backpressure",
        "64",
        PORT="9000",
        WEB_WORKERS="4",
        DJANGO_SETTINGS_MODULE="config.settings.embedded",
    )
    assert done.returncode == 0, done.stderr
    _, argv = _recorded(record)
    assert argv[argv.index("--port") + 1] == "9000"
    assert argv[argv.index("--workers") + 1] == "4"
    # Extra arguments go before the application, which granian takes last.
    assert argv[-3:] == ["--backpressure", "64", "config.wsgi:application"]
    assert "settings config.settings.embedded" in record.read_text()

    record.unlink()
    assert _run(stubs, record, "worker", CELERY_QUEUES="payments").returncode == 0
    _, argv = _recorded(record)
    assert argv[argv.index("-Q") + 1] == "payments"


def test_sigterm_reaches_the_server(stubs: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    process = subprocess.Popen(  # noqa: S603
        ["/bin/sh", str(ENTRYPOINT), "worker"],
        cwd=ROOT,
        env=_environment(stubs, record, STUB_WAIT="1"),
    )
    try:
        assert wait_until(lambda: record.exists() and "ready" in record.read_text(), timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "signal TERM" in record.read_text()


def test_secrets_come_from_files_named_by_name_file(stubs: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    secret = tmp_path / "secret_key"
    secret.write_text("from-the-file\n")
    done = _run(stubs, record, "relay", SECRET_KEY_FILE=str(secret))
    assert done.returncode == 0, done.stderr
    assert "secret from-the-file\n" in record.read_text()
    # A value given directly wins over the file.
    record.unlink()
    assert (
        _run(stubs, record, "relay", SECRET_KEY_FILE=str(secret), SECRET_KEY="direct").returncode
        == 0
    )
    assert "secret direct\n" in record.read_text()
    # A file that cannot be read stops the start before any server runs.
    record.unlink()
    done = _run(stubs, record, "relay", SECRET_KEY_FILE=str(tmp_path / "missing"))
    assert done.returncode != 0
    assert "cannot read SECRET_KEY_FILE" in done.stderr
    assert not record.exists()


def test_no_role_is_a_usage_error_and_other_commands_run_as_given(
    stubs: Path, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    done = _run(stubs, record)
    assert done.returncode == 64
    assert "usage:" in done.stderr
    assert not record.exists()
    done = _run(stubs, record, "sh", "-c", "echo shell $0", "x")
    assert (done.returncode, done.stdout) == (0, "shell x\n")


# -- healthcheck, against a real HTTP server --------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    hosts: list[tuple[str | None, str | None]] = []

    def do_GET(self) -> None:
        type(self).hosts.append((self.headers["Host"], self.headers["X-Forwarded-Proto"]))
        code = type(self).status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    _Health.status = 200
    _Health.hosts = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _healthcheck(*argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return script_run(
        ENTRYPOINT,
        "healthcheck",
        *argv,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **extra},
    )


def test_healthcheck_passes_on_2xx_only(health_server: int) -> None:
    port = str(health_server)
    healthy = _healthcheck(PORT=port, ALLOWED_HOSTS="shop.example.com,api.example.com")
    assert healthy.returncode == 0, healthy.stderr
    # The first allowed host and HTTPS, so Django neither refuses nor redirects the probe.
    assert _Health.hosts == [("shop.example.com", "https")]

    _Health.status = 503
    assert _healthcheck(PORT=port).returncode != 0
    assert _healthcheck(f"http://127.0.0.1:{port}/elsewhere").returncode != 0
    # Nobody listening.
    assert _healthcheck(PORT=str(free_port())).returncode != 0


# -- migrate, with the real interpreter on PostgreSQL -----------------------------


def _production_environment(database_url: str) -> dict[str, str]:
    from config.settings.jwt_keys import jwt_key_entry

    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "DATABASE_URL": database_url,
        "SECRET_KEY": base64.urlsafe_b64encode(os.urandom(48)).decode(),
        "ENCRYPTION_KEYS": f"t1:{base64.b64encode(os.urandom(32)).decode()}",
        "JWT_PRIVATE_KEYS": jwt_key_entry("t1"),
        "ALLOWED_HOSTS": "shop.example.com",
    }


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    if not database_url.startswith(("postgres://", "postgresql://")):
        pytest.skip("the migrate role needs PostgreSQL")
    server, name = database_url.rsplit("/", 1)
    name = f"{name.split('?')[0]}_entrypoint"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrate_waits_for_the_database_then_migrates_it(empty_database: str) -> None:
    environment = _production_environment(empty_database)
    started = time.monotonic()
    done = script_run(ENTRYPOINT, "migrate", env=environment, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with psycopg.connect(empty_database) as connection:
        row = connection.execute(
            "SELECT count(*) FROM django_migrations WHERE app = 'orders'"
        ).fetchone()
    assert row is not None
    assert row[0] > 0
    # A second run has nothing to do and says so.
    again = script_run(ENTRYPOINT, "migrate", env=environment, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "No migrations to apply" in again.stdout
    assert time.monotonic() - started < 300


def test_migrate_gives_up_on_a_database_that_never_answers() -> None:
    environment = _production_environment(
        f"postgres://postgres:postgres@127.0.0.1:{free_port()}/nothing"
    )
    started = time.monotonic()
    done = script_run(
        ENTRYPOINT, "migrate", env={**environment, "DATABASE_WAIT_SECONDS": "2"}, timeout=60
    )
    assert done.returncode != 0
    assert "did not answer in time" in done.stderr
    assert "waiting for the database" in done.stderr
    assert 2 <= time.monotonic() - started < 30


# -- web and ws, the real servers ---------------------------------------------------


@pytest.mark.parametrize("role", ["web", "ws"])
def test_the_real_server_of_a_role_answers_its_healthcheck_and_stops_on_sigterm(
    role: str, tmp_path: Path
) -> None:
    port = str(free_port())
    environment = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings.embedded",
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "SECRETS_PATH": str(tmp_path / "secrets.json"),
        "HOST": "127.0.0.1",
        "PORT": port,
        "WEB_WORKERS": "1",
        "ALLOWED_HOSTS": "shop.example.com",
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(  # noqa: S603
        ["/bin/sh", str(ENTRYPOINT), role], cwd=ROOT, env=environment, stdout=log, stderr=log
    )
    try:
        healthy = wait_until(
            lambda: _healthcheck(**environment).returncode == 0 or process.poll() is not None,
            timeout=60,
            interval=0.5,
        )
        assert healthy, (tmp_path / "server.log").read_text()
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        # The server is the entry point's process: SIGTERM to it stops the server,
        # which finishes cleanly (uvicorn then re-raises the signal: -SIGTERM).
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM), (
            tmp_path / "server.log"
        ).read_text()
        assert _healthcheck(**environment).returncode != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def test_background_roles_serve_the_metrics_their_liveness_probes_read(
    empty_database: str, redis_url: str, broker_url: str, tmp_path: Path
) -> None:
    """worker, relay and publisher, for real on the production profile: compose and
    Kubernetes call them alive while GET /metrics on METRICS_PORT answers."""
    environment = {
        **_production_environment(empty_database),
        "REDIS_URL": redis_url,
        "BROKER_URL": broker_url,
        # A queue of this test's own: the broker is shared with other test runs.
        "CELERY_QUEUES": f"deploy-test-{os.getpid()}",
    }
    migrated = script_run(ENTRYPOINT, "migrate", env=environment, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    # The worker's node name is this test's own too (its control queue is exclusive).
    for role, extra in (
        ("worker", ["-n", f"deploy-test-{os.getpid()}@%h"]),
        ("relay", []),
        ("publisher", []),
    ):
        _metrics_answer_until_sigterm([role, *extra], environment, tmp_path / f"{role}.log")


def test_the_worker_consumes_every_work_queue_of_the_celery_configuration(
    empty_database: str, broker_url: str, tmp_path: Path
) -> None:
    """The worker role, for real: without CELERY_QUEUES it consumes exactly
    config.celery's TASK_QUEUES (not the dead-letter queue), as Celery's broker
    control reports them."""
    node = f"deploy-queues-{os.getpid()}-{secrets.token_hex(3)}@{socket.gethostname()}"
    environment = {**_production_environment(empty_database), "BROKER_URL": broker_url}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            ["/bin/sh", str(ENTRYPOINT), "worker", "-n", node, "--pool", "solo"],
            cwd=ROOT,
            env={**environment, "METRICS_PORT": str(free_port())},
            stdout=log,
            stderr=log,
        )
    control = Celery(broker=broker_url)
    consumed: list[list[str]] = []

    def answered() -> bool:
        replies = control.control.inspect(destination=[node], timeout=1).active_queues()
        if replies and node in replies:
            consumed.append([queue["name"] for queue in replies[node]])
        return bool(consumed) or process.poll() is not None

    try:
        assert wait_until(answered, timeout=90, interval=0.5), log_path.read_text()
        assert consumed, log_path.read_text()
        assert sorted(consumed[0]) == sorted(queue.name for queue in TASK_QUEUES)
    finally:
        control.close()
        stop_process(process)


def _metrics_answer_until_sigterm(
    argv: list[str], environment: dict[str, str], log_path: Path
) -> None:
    port = str(free_port())
    metrics = f"http://127.0.0.1:{port}/metrics"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            ["/bin/sh", str(ENTRYPOINT), *argv],
            cwd=ROOT,
            env={**environment, "METRICS_PORT": port},
            stdout=log,
            stderr=log,
        )
    try:
        alive = wait_until(
            lambda: (
                script_run(ENTRYPOINT, "healthcheck", metrics, env=environment).returncode == 0
                or process.poll() is not None
            ),
            timeout=60,
            interval=0.5,
        )
        assert alive, log_path.read_text()
        assert process.poll() is None, log_path.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM), log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
