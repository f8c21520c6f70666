"""PostgreSQL clusters of a test's own, and app servers on them.

The clusters are made by ``deploy/postgres/pgcluster.py`` (the same code
``make cluster``, ``make backup``, ``make restore`` and ``make failover`` run):
a primary with ``initdb``, a streaming replica with ``pg_basebackup -R``, each
on a free port under a temporary directory, started and stopped by the test.
The shared server on 5432 is never touched.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from config.settings.jwt_keys import jwt_key_entry
from conftest import REQUIRE_SERVICES
from deploy.postgres import pgcluster
from tests.support.processes import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
APP_DATABASE = "emporium"


def require_postgres_binaries() -> None:
    """Skips (or fails, when services are required) without initdb and pg_basebackup."""
    try:
        pgcluster._bindir()
    except RuntimeError as error:
        if REQUIRE_SERVICES:
            pytest.fail(f"PostgreSQL binaries are required: {error}")
        pytest.skip(f"PostgreSQL binaries are not installed: {error}")


@contextmanager
def scratch_directory() -> Iterator[Path]:
    """A directory the server's user can reach (pytest's own are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="emporium-pg-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def app_environment(database_url: str, **extra: str) -> dict[str, str]:
    """The production profile's environment for a process on ``database_url``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "JWT_PRIVATE_KEYS": jwt_key_entry("cluster-tests"),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "CATALOG_CACHE_ENABLED": "false",
        "THROTTLE_USER_WRITES": "100000/min",
        "PAYMENT_WEBHOOK_SECRET": "",
        "LOG_LEVEL": "ERROR",
        "ACCESS_LOG": "false",
        **extra,
    }


def manage(environment: dict[str, str], *arguments: str, timeout: float = 300) -> str:
    completed = subprocess.run(  # noqa: S603 - the project's own manage.py
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(arguments)}:\n{completed.stderr[-4000:]}")
    return completed.stdout


def app_database_create(primary: pgcluster.Cluster, environment: dict[str, str]) -> None:
    """The application's database on ``primary``, migrated."""
    primary.sql(f"CREATE DATABASE {APP_DATABASE}")
    manage(environment, "migrate", "--no-input", "-v", "0")


# Buyers with tokens and one product with plenty of stock, written through the
# application's own services and factories; printed as JSON.
_SEED = """
import json
from decimal import Decimal
from emporium.accounts.services import token_pair_issue
from emporium.core.tests.factories import ProductFactory, UserFactory
product = ProductFactory(stock_quantity=1_000_000, price=Decimal("12.50"))
users = [UserFactory() for _ in range({buyers})]
print(json.dumps({{
    "product": product.pk,
    "tokens": [token_pair_issue(user=user).access for user in users],
}}))
"""


def seed(environment: dict[str, str], *, buyers: int) -> dict[str, object]:
    output = manage(environment, "shell", "-c", _SEED.format(buyers=buyers))
    result: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return result


@dataclass
class AppServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def app_server_start(environment: dict[str, str], log_path: Path, *, threads: int = 4) -> AppServer:
    """granian on the WSGI application, one worker, as the production command runs it."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - the project's own launcher
            [
                *(sys.executable, "-m", "emporium.core.servers", "granian"),
                *("--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port)),
                *("--workers", "1", "--blocking-threads", str(threads)),
                "config.wsgi:application",
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = AppServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)

    def answers() -> bool:
        try:
            return httpx.get(server.url + "/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return process.poll() is not None

    if not wait_until(answers, timeout=60) or process.poll() is not None:
        server.stop()
        raise RuntimeError(f"the app server did not start:\n{server.log()}")
    return server


def statement_calls(cluster: pgcluster.Cluster, pattern: str) -> int:
    """Calls of statements on ``cluster`` whose text matches ``pattern`` (ILIKE), since reset."""
    # The test's own constants, not input.
    statement = (
        "SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements s "  # noqa: S608
        f"JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{APP_DATABASE}' "
        f"AND s.query ILIKE '{pattern}'"
    )
    text = cluster.sql(statement)
    return int(text or 0)


def statements_reset(*clusters: pgcluster.Cluster) -> None:
    for cluster in clusters:
        cluster.sql("SELECT pg_stat_statements_reset()")
