"""bench/locustfile.py, headless, against a real server: every journey step runs, nothing fails.

Locust runs in its own process (it patches the standard library with gevent,
which must never happen inside pytest). The server is the project's ASGI
application under uvicorn, on the test's database: PostgreSQL when
DATABASE_URL is set, else a SQLite file (the dashboard browser test's
fixture), with the payment provider simulator beside it and background tasks
run in the server's process. A few shoppers and the dispatcher run for about
ten seconds with short think times.
"""

from __future__ import annotations

import ast
import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emporium.dashboard.tests.test_browser import (  # the server fixture, and its staff account
    STAFF_PASSWORD,
    STAFF_USERNAME,
    Server,
    asgi_server,  # noqa: F401 - a fixture, asked for by name below
)
from tests.support.processes import start_provider, stop_process

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "bench" / "locustfile.py"
CUSTOMER_PASSWORD = "load-test-shopper-password-4"
SHOPPERS = 3
RUN_SECONDS = 10


def journey_steps() -> dict[str, str]:
    """The locustfile's ``STEPS``, read from its source (importing it would import Locust)."""
    tree = ast.parse(LOCUSTFILE.read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "STEPS"
        ):
            steps: dict[str, str] = ast.literal_eval(node.value)
            return steps
    raise AssertionError("bench/locustfile.py has no STEPS")


@pytest.fixture
def server_with_provider(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    provider = start_provider()
    try:
        # The server process inherits these: charges go to the simulator, and its
        # background tasks run in-process (no worker would take them from a broker).
        monkeypatch.setenv("PAYMENT_PROVIDER_URL", provider.url)
        monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET", provider.webhook_secret)
        monkeypatch.delenv("BROKER_URL", raising=False)
        server: Server = request.getfixturevalue("asgi_server")
        yield server
    finally:
        stop_process(provider.process)


def _catalog_and_shoppers(server: Server) -> list[str]:
    """Products with stock and shopper accounts, made through the API as staff."""
    client = httpx.Client(base_url=server.url, timeout=30)
    login = client.post(
        "/api/auth/login/", json={"username": STAFF_USERNAME, "password": STAFF_PASSWORD}
    )
    assert login.status_code == 200, login.text
    staff = {"Authorization": f"Bearer {login.json()['access']}"}
    category = client.post("/api/categories/", json={"name": "Lamps"}, headers=staff)
    assert category.status_code == 201, category.text
    for number in range(1, 7):
        product = client.post(
            "/api/products/",
            headers=staff,
            json={
                "sku": f"LAMP-{number:03d}",
                "name": f"Classic steel lamp {number}",
                "description": "A lamp for the load test.",
                "price": f"{20 + number}.00",
                "stock_quantity": 10_000,
                "category": category.json()["id"],
            },
        )
        assert product.status_code == 201, product.text
    accounts = []
    for number in range(1, SHOPPERS + 1):
        username = f"shopper{number}"
        made = client.post(
            "/api/auth/register/",
            json={
                "username": username,
                "email": f"{username}@example.com",
                "password": CUSTOMER_PASSWORD,
            },
        )
        assert made.status_code == 201, made.text
        accounts.append(f"{username}:{CUSTOMER_PASSWORD}")
    return accounts


def _stats(prefix: Path) -> dict[str, dict[str, Any]]:
    with Path(f"{prefix}_stats.csv").open(newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


@pytest.mark.django_db(transaction=True)
def test_every_journey_step_runs_without_a_failure(
    server_with_provider: Server, tmp_path: Path
) -> None:
    server = server_with_provider
    customers = _catalog_and_shoppers(server)
    prefix = tmp_path / "locust"
    environment = {
        **os.environ,
        "LOADTEST_CUSTOMERS": ",".join(customers),
        "LOADTEST_STAFF": f"{STAFF_USERNAME}:{STAFF_PASSWORD}",
        "LOADTEST_WAIT": "0.05,0.3",
    }
    done = subprocess.run(  # noqa: S603 - this interpreter's locust, our file
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            server.url,
            "--users",
            str(SHOPPERS + 1),
            "--spawn-rate",
            str(SHOPPERS + 1),
            "--run-time",
            f"{RUN_SECONDS}s",
            "--stop-timeout",
            "5",
            "--csv",
            str(prefix),
            "--only-summary",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS + 120,
    )
    said = f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}\nserver:\n{server.log()[-3000:]}"
    stats = _stats(prefix)

    missing = [
        name
        for name in journey_steps().values()
        if int(stats.get(name, {}).get("Request Count", 0)) == 0
    ]
    assert missing == [], said
    assert stats["Aggregated"]["Failure Count"] == "0", said
    assert done.returncode == 0, said
