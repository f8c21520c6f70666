"""Every Grafana panel's query returns data from a real Prometheus scraping a running Emporium.

The test starts what a deployment runs, on the production profile, the test's
PostgreSQL database, Redis and RabbitMQ: granian (the API), uvicorn (the
WebSockets), a Celery worker, beat, the outbox relay, the dashboard publisher
and the payment provider's simulator. Prometheus (Debian's package) scrapes them
every second with the committed scrape configuration, pointed at the test's
ports. The app servers refuse the scraper's address (METRICS_ALLOWED_NETWORKS
names a network it is not in), so the scrape only works with the token that
``authorization.credentials_file`` hands over.

Traffic then runs in rounds (catalog reads, a missing product, telemetry with
a duplicate and a rejected point, a checkout and its payment, a refused
checkout, a readiness probe) while a staff WebSocket follows the dashboard
stream, until every query of every panel of every dashboard answers with at
least one series. Panels on a metric nothing emits yet are listed in
``NO_SERIES_YET`` with the reason; their queries must still parse.

With ``EMPORIUM_MONITORING_SCREENSHOTS=<directory>`` the test also saves
headless Chromium screenshots of Prometheus' graph page for the main panels
(docs/images/ holds the ones docs/monitoring.md shows).
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from config.settings.jwt_keys import jwt_key_entry
from conftest import require_service
from emporium.core.tests.factories import PASSWORD, ProductFactory, StaffFactory, UserFactory
from emporium.delivery import services as delivery_services
from emporium.orders.tests.support import ORDERS_URL, cart_fill
from tests.support.monitoring import (
    PanelQuery,
    PrometheusServer,
    panel_queries,
    require_tool,
    scrape_configuration_write,
    start_prometheus,
)
from tests.support.processes import (
    ROOT,
    ProviderProcess,
    database_url_for_current_test_db,
    free_port,
    start_provider,
    stop_process,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

# Panels whose metric no process emits yet, and why; their queries must parse.
NO_SERIES_YET = {
    "Replica lag": "emitted by app servers with DATABASE_REPLICA_URLS; this test runs none",
    "Replicas usable for reads": "emitted by app servers with DATABASE_REPLICA_URLS; "
    "this test runs none",
}
DEADLINE_SECONDS = 150
SCREENSHOT_TRAFFIC_SECONDS = 120
# Prometheus' graph page for these panels (dashboard, panel), each in its file, over
# one-minute windows (the panels' five would hardly move in a test's few minutes).
SCREENSHOTS = {
    "prometheus-requests-by-route.png": ("Emporium API", "Requests by route"),
    "prometheus-latency-p99-by-route.png": ("Emporium API", "p99 latency by route"),
    "prometheus-task-runs.png": (
        "Emporium queues, outbox and tasks",
        "Task runs by task and outcome",
    ),
}


@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@dataclass
class Emporium:
    """The running processes: each job's scrape address and the app servers' URLs."""

    directory: Path
    environment: dict[str, str]
    targets: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    def start(self, name: str, job: str, port: int, command: list[str], **extra: str) -> None:
        log_path = self.directory / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - the project's own commands
                command,
                cwd=ROOT,
                env={**self.environment, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(Process(name, process, log_path))
        self.targets[job] = f"127.0.0.1:{port}"

    def url(self, job: str) -> str:
        return f"http://{self.targets[job]}"

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} (exit {p.process.poll()}):\n{p.log()}" for p in self.processes
        )

    def stop(self) -> None:
        for entry in reversed(self.processes):
            if entry.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(entry.process.pid, 15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                entry.process.wait(timeout=20)
            stop_process(entry.process)


def _environment(provider: ProviderProcess, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DATABASE_URL": database_url_for_current_test_db(),
        "REDIS_URL": require_service("REDIS_URL"),
        "BROKER_URL": require_service("BROKER_URL"),
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "JWT_PRIVATE_KEYS": jwt_key_entry("monitoring"),
        "PAYMENT_PROVIDER_URL": provider.url,
        "PAYMENT_WEBHOOK_SECRET": provider.webhook_secret,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "THROTTLE_USER_WRITES": "100000/min",
        "LOG_LEVEL": "WARNING",
        "DATABASE_CONN_MAX_AGE": "0",
        # Prometheus on loopback is outside the allowed network: only its token lets it in.
        "METRICS_ALLOWED_NETWORKS": "192.0.2.0/24",
        "METRICS_TOKEN": token,
    }


def _python(*arguments: str) -> list[str]:
    return [sys.executable, *arguments]


@pytest.fixture
def emporium(tmp_path: Path) -> Iterator[Emporium]:
    require_service("DATABASE_URL")
    require_tool("prometheus")
    provider = start_provider()
    token = secrets.token_urlsafe(32)
    (tmp_path / "metrics-token").write_text(token + "\n")
    running = Emporium(tmp_path, _environment(provider, token))
    web, ws = free_port(), free_port()
    running.start(
        "granian",
        "emporium-web",
        web,
        _python(
            *("-m", "emporium.core.servers", "granian", "--interface", "wsgi"),
            *("--host", "127.0.0.1", "--port", str(web), "--workers", "2"),
            "config.wsgi:application",
        ),
    )
    running.start(
        "uvicorn",
        "emporium-ws",
        ws,
        _python(
            *("-m", "emporium.core.servers", "uvicorn", "config.asgi:application"),
            *("--host", "127.0.0.1", "--port", str(ws), "--log-level", "warning"),
        ),
    )
    for name, job, command in (
        (
            "worker",
            "emporium-worker",
            _python(
                *("-m", "celery", "-A", "config", "worker", "-Q", "payments,email,default"),
                *("--pool", "prefork", "--concurrency", "1", "--loglevel", "WARNING"),
                *("--without-heartbeat", "--without-mingle", "--without-gossip"),
            ),
        ),
        (
            "beat",
            "emporium-beat",
            _python(
                *("-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"),
                *("--schedule", str(tmp_path / "beat-schedule")),
            ),
        ),
        ("relay", "emporium-relay", _python("manage.py", "outbox_relay")),
        ("publisher", "emporium-publisher", _python("manage.py", "dashboard_publisher")),
    ):
        port = free_port()
        running.start(name, job, port, command, METRICS_PORT=str(port))
    try:
        started = wait_until(
            lambda: all(
                _answers(running.url(job) + "/health/live")
                for job in ("emporium-web", "emporium-ws")
            ),
            timeout=90,
            interval=0.5,
        )
        assert started, f"the app servers did not start:\n{running.logs()}"
        yield running
    finally:
        running.stop()
        stop_process(provider.process)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture
def prometheus(emporium: Emporium, tmp_path: Path) -> Iterator[PrometheusServer]:
    configuration = scrape_configuration_write(
        tmp_path / "prometheus", emporium.targets, tmp_path / "metrics-token", interval="1s"
    )
    yield from start_prometheus(configuration)


# -- traffic --------------------------------------------------------------------------------


@dataclass
class Shop:
    """What the traffic rounds act on: data written here, requests sent over HTTP."""

    client: httpx.Client
    customer: str  # an access token
    customer_user: Any
    staff: str
    device_token: str
    device_id: int
    product_id: int
    products: list[Any]
    moment: int = 0


def _login(client: httpx.Client, user: Any) -> str:
    """Signs in over the API. The test profile's password hasher is one production does not
    accept, so the password is stored with production's PBKDF2 first."""
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt())
    user.save(update_fields=["password"])
    response = client.post(
        "/api/auth/login/", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access"])


def _shop(emporium: Emporium) -> Shop:
    products = ProductFactory.create_batch(3, stock_quantity=10_000)
    customer, staff = UserFactory(), StaffFactory()
    issued = delivery_services.device_issue(name="monitoring courier")
    client = httpx.Client(base_url=emporium.url("emporium-web"), timeout=30)
    return Shop(
        client=client,
        customer=_login(client, customer),
        customer_user=customer,
        staff=_login(client, staff),
        device_token=issued.token,
        device_id=issued.device.pk,
        product_id=products[0].pk,
        products=products,
    )


def _traffic_round(shop: Shop) -> None:
    client = shop.client
    bearer = {"Authorization": f"Bearer {shop.customer}"}
    for path in (
        "/api/products/",
        f"/api/products/{shop.product_id}/",
        "/api/categories/",
        "/api/products/999999999/",  # 404
        "/health/ready",  # readiness sets emporium_dependency_up
    ):
        client.get(path)
    # Telemetry: a new point, the same point again (duplicate), one out of range (rejected).
    shop.moment += 1
    moment = timezone.now() - timedelta(minutes=5) + timedelta(milliseconds=10 * shop.moment)
    stamp = moment.isoformat().replace("+00:00", "Z")
    point = {"device_id": shop.device_id, "timestamp": stamp, "latitude": 52.5, "longitude": 13.4}
    client.post(
        "/api/telemetry/",
        json=[point, point, {**point, "latitude": 999}],
        headers={"Authorization": f"Device {shop.device_token}"},
    )
    # A checkout refused (the cart is empty), then one placed and paid.
    client.post(ORDERS_URL, headers={**bearer, "Idempotency-Key": str(uuid.uuid4())})
    cart_fill(shop.customer_user, [(shop.products[shop.moment % 3], 1)])
    placed = client.post(ORDERS_URL, headers={**bearer, "Idempotency-Key": str(uuid.uuid4())})
    assert placed.status_code == 201, placed.text
    paid = client.post(
        f"/api/orders/{placed.json()['id']}/payments/",
        json={"payment_method": "card", "token": "tok_visa"},
        headers={**bearer, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert paid.status_code == 201, paid.text


class DashboardSocket:
    """A staff WebSocket on the dashboard stream, read in a thread for as long as it is open."""

    def __init__(self, url: str, token: str) -> None:
        self.connection: ClientConnection = connect(
            url, subprotocols=["emporium.jwt", token], open_timeout=10
        )
        self.received = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            while True:
                self.connection.recv()
                self.received += 1

    def close(self) -> None:
        self.connection.close()
        self._thread.join(timeout=10)


# -- the test --------------------------------------------------------------------------------


def _evaluate(prometheus: PrometheusServer, queries: list[PanelQuery]) -> dict[PanelQuery, str]:
    """Each query's problem: a PromQL error, or no series; queries with data are left out."""
    problems = {}
    for query in queries:
        answer = prometheus.query(query.expr)
        if answer.get("status") != "success":
            problems[query] = f"error: {answer.get('error')}"
        elif query.panel in NO_SERIES_YET:
            continue
        elif not answer["data"]["result"]:
            problems[query] = "no series"
        elif all(math.isnan(float(series["value"][1])) for series in answer["data"]["result"]):
            problems[query] = "no number (NaN in every series)"
    return problems


def _rule_problems(prometheus: PrometheusServer) -> dict[str, str]:
    """The alert rules Prometheus could not evaluate on the real series, and why."""
    groups = prometheus.api("/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules
    return {rule["name"]: rule.get("lastError", "") for rule in rules if rule["health"] != "ok"}


def _targets_down(prometheus: PrometheusServer) -> dict[str, str]:
    targets = prometheus.api("/api/v1/targets")["data"]["activeTargets"]
    return {
        target["labels"]["job"]: target.get("lastError") or target["health"]
        for target in targets
        if target["health"] != "up"
    }


def test_every_panel_of_every_dashboard_returns_data(
    emporium: Emporium, prometheus: PrometheusServer
) -> None:
    queries = panel_queries()
    assert {query.panel for query in queries} >= set(NO_SERIES_YET)
    shop = _shop(emporium)
    ws_url = emporium.url("emporium-ws").replace("http://", "ws://") + "/ws/dashboard/"
    socket = DashboardSocket(ws_url, shop.staff)
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        problems = _evaluate(prometheus, queries)
        while problems and time.monotonic() < deadline:
            _traffic_round(shop)
            time.sleep(1)
            problems = _evaluate(prometheus, queries)
        down = _targets_down(prometheus)
        rule_problems = _rule_problems(prometheus)
        if os.environ.get("EMPORIUM_MONITORING_SCREENSHOTS"):
            # A couple of minutes of traffic, so that the graphs have a shape.
            until = time.monotonic() + SCREENSHOT_TRAFFIC_SECONDS
            while time.monotonic() < until:
                _traffic_round(shop)
                time.sleep(0.5)
            _screenshots(prometheus, Path(os.environ["EMPORIUM_MONITORING_SCREENSHOTS"]))
    finally:
        socket.close()
        shop.client.close()
    report = "\n".join(f"{query}\n    -> {problem}" for query, problem in problems.items())
    assert not problems, (
        f"{len(problems)} of {len(queries)} panel queries failed:\n{report}\n"
        f"targets not up: {down}\n{emporium.logs()}"
    )
    assert down == {}
    assert rule_problems == {}
    assert socket.received > 0


def _screenshots(prometheus: PrometheusServer, directory: Path) -> None:
    from tests.support.browser import browser_page

    directory.mkdir(parents=True, exist_ok=True)
    with browser_page() as (page, _problems):
        page.set_viewport_size({"width": 1280, "height": 800})
        exprs = {(query.dashboard, query.panel): query.expr for query in panel_queries()}
        for name, panel in SCREENSHOTS.items():
            expr = exprs[panel].replace("[5m]", "[1m]")
            parameters = urllib.parse.urlencode(
                {"g0.expr": expr, "g0.tab": "0", "g0.range_input": "3m"}
            )
            page.goto(f"{prometheus.url}/graph?{parameters}")
            page.wait_for_timeout(3000)
            page.screenshot(path=str(directory / name), full_page=True)
