"""A database with no connection to give is a 503 with Retry-After, never a 500.

Real app servers on the production profile, on the test's PostgreSQL database:
uvicorn (ASGI) and granian (WSGI), each with a pool of at most
``POOL_SIZE`` connections, take 300 checkouts at once for fewer units than
buyers. PostgreSQL never sees more than the pool's connections from a server,
so the shared server (and everyone else on it) is never starved.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
import threading
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection
from rest_framework_simplejwt.tokens import AccessToken

from conftest import require_service
from emporium.catalog.models import Product
from emporium.core.tests.factories import ProductFactory, UserFactory
from emporium.orders.models import Order
from emporium.orders.tests.support import ORDERS_URL, cart_fill
from tests.support.processes import (
    database_url_for_current_test_db,
    free_port,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[1]
POOL_SIZE = 4
BUYERS = 300
UNITS = 40


def _token_keys() -> dict[str, str]:
    """This process's token keys, so that the server accepts the tokens the test mints."""
    keys = {"SECRET_KEY": settings.SECRET_KEY}
    installation_keys = ROOT / "var" / "jwt.keys"  # asymmetric keys the test profile made
    if getattr(settings, "JWT_SIGNING_KEYS", None) and installation_keys.exists():
        keys["JWT_PRIVATE_KEYS"] = os.environ.get("JWT_PRIVATE_KEYS") or (
            installation_keys.read_text()
        )
    return keys


def _server_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DATABASE_URL": database_url,
        **_token_keys(),
        "PAYMENT_WEBHOOK_SECRET": "",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "THROTTLE_USER_WRITES": "100000/min",
        "CATALOG_CACHE_ENABLED": "false",
        "LOG_LEVEL": "ERROR",
        **extra,
    }


def _start(kind: str, env: dict[str, str], log_path: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    if kind == "uvicorn":
        arguments = ["config.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    else:  # more threads than pooled connections, so some must wait
        arguments = [
            *("--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port)),
            *("--blocking-threads", str(POOL_SIZE * 2), "config.wsgi:application"),
        ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - the project's own launcher
            [sys.executable, "-m", "emporium.core.servers", kind, *arguments],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            httpx.get(url + "/api/schema/", timeout=2)
        except httpx.HTTPError:
            return process.poll() is not None
        return True

    if not wait_until(answers, timeout=60) or process.poll() is not None:
        stop_process(process)
        raise RuntimeError(f"{kind} did not start:\n{log_path.read_text(errors='replace')}")
    return url, process


class ConnectionWatch:
    """Samples how many connections PostgreSQL has open to the test database."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(
            host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
        ) as watcher:
            while not self._stop.is_set():
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.database]
                ).fetchone()
                self.most = max(self.most, int(row[0]) if row else 0)
                self._stop.wait(0.02)

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class ProductRowHold:
    """Holds the product's row lock for ``seconds`` from another connection.

    Checkouts that reach the stock update wait on the lock while holding their
    pooled connection, so the pool is certainly empty for that long and the
    buyers behind them run out of patience: exhaustion without relying on
    the machine being slow. The lock is released on a timer, and the held
    checkouts then finish.
    """

    def __init__(self, product_id: int, seconds: float) -> None:
        database = connection.settings_dict
        self._connection = psycopg.connect(
            host=database["HOST"] or None,
            port=database["PORT"] or None,
            user=database["USER"] or None,
            password=database["PASSWORD"] or None,
            dbname=database["NAME"],
        )
        self._product_id = product_id
        self._timer = threading.Timer(seconds, self._connection.commit)

    def __enter__(self) -> ProductRowHold:
        self._connection.execute(
            "SELECT 1 FROM catalog_product WHERE id = %s FOR UPDATE", [self._product_id]
        )
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.join()
        self._connection.close()


async def _checkouts(url: str, tokens: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(ORDERS_URL, headers={"Authorization": f"Bearer {token}"})
                    for token in tokens
                )
            )
        )


def _assert_one_error_shape(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


@pytest.fixture
def _postgresql() -> None:
    require_service("DATABASE_URL")
    assert connection.vendor == "postgresql"


@pytest.mark.usefixtures("_postgresql")
@pytest.mark.parametrize("kind", ["uvicorn", "granian"])
def test_300_checkouts_on_a_small_pool_are_orders_409s_or_503s_and_never_oversell(
    kind: str, tmp_path: Path
) -> None:
    product = ProductFactory(price=Decimal("5.00"), stock_quantity=UNITS)
    buyers = UserFactory.create_batch(BUYERS)
    for buyer in buyers:
        cart_fill(buyer, [(product, 1)])
    tokens = [str(AccessToken.for_user(buyer)) for buyer in buyers]
    env = _server_env(
        database_url_for_current_test_db(),
        DATABASE_POOL_MAX_SIZE=str(POOL_SIZE),
        DATABASE_POOL_MIN_SIZE="1",
        # Short, so that waiting buyers run out of patience during the burst.
        DATABASE_POOL_TIMEOUT="0.05",
    )
    url, process = _start(kind, env, tmp_path / f"{kind}.log")
    try:
        with (
            ConnectionWatch(str(connection.settings_dict["NAME"])) as watch,
            ProductRowHold(product.pk, seconds=2.0),
        ):
            responses = asyncio.run(_checkouts(url, tokens))
    finally:
        stop_process(process)

    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) <= {201, 409, 503}, statuses
    assert statuses[503] > 0, statuses  # the pool ran dry, and that was answered
    for response in responses:
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "2"
            assert _assert_one_error_shape(response)["code"] == "service_busy"
        elif response.status_code == 409:
            assert _assert_one_error_shape(response)["code"] == "insufficient_stock"
    product.refresh_from_db()
    orders = Order.objects.count()
    assert orders == statuses[201] <= UNITS
    assert product.stock_quantity == UNITS - orders >= 0
    # The server's pool, plus this test's own connection, the watcher's and the lock holder's.
    assert watch.most <= POOL_SIZE + 3, watch.most


@pytest.mark.usefixtures("_postgresql")
@pytest.mark.parametrize("kind", ["uvicorn", "granian"])
def test_a_server_refusing_connections_is_a_503_on_every_path(kind: str, tmp_path: Path) -> None:
    """PostgreSQL's own refusal (53300) for a role that may open no connection at all."""
    role = f"emporium_refused_{secrets.token_hex(4)}"
    database = str(connection.settings_dict["NAME"])
    product = ProductFactory(stock_quantity=5)
    buyer = UserFactory()
    token = str(AccessToken.for_user(buyer))
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    try:
        refused_url = f"postgres://{role}@127.0.0.1:5432/{database}"
        url, process = _start(kind, _server_env(refused_url), tmp_path / f"{kind}.log")
        try:
            reads = [
                httpx.get(f"{url}/api/products/", timeout=30),
                httpx.get(f"{url}/api/products/{product.pk}/", timeout=30),
                httpx.get(f"{url}/api/search/?q=anything", timeout=30),
            ]
            checkout = httpx.post(
                url + ORDERS_URL, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
        finally:
            stop_process(process)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP ROLE "{role}"')

    for response in [*reads, checkout]:
        assert response.status_code == 503, (response.request.url, response.text)
        assert response.headers["Retry-After"] == "2"
        assert _assert_one_error_shape(response)["code"] == "service_busy"
    assert Product.objects.get(pk=product.pk).stock_quantity == 5
    assert Order.objects.count() == 0
