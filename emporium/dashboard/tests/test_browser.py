"""The live dashboard in a real headless Chromium against a real ASGI server process.

The server is the project's ASGI application under uvicorn, in its own process,
on the same database as the test: PostgreSQL and Redis (pub/sub between
processes) when they are configured, otherwise a SQLite file and the
in-process channel layer of the embedded profile. Everything the test changes
goes through HTTP, as a courier's phone and a customer would do it, and
everything it checks is read from the page.

Skips where Chromium, Playwright or the built script is missing, and fails
there instead when EMPORIUM_REQUIRE_SERVICES=1 (CI has all three).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.staticfiles import finders
from django.db import connection

from emporium.dashboard.views import BUNDLE
from emporium.search.tests.support import REQUIRE_SERVICES
from tests.support.browser import browser_page
from tests.support.processes import (
    database_url_for_current_test_db,
    free_port,
    stop_process,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[3]
STAFF_USERNAME = "opsdesk"
STAFF_PASSWORD = "dashboard-test-password-5"
WAIT_MS = 60_000  # the machine is shared: be patient, but poll, never sleep


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _server_environment(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        # Test settings: the suite's password hasher, and no .env surprises.
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PYTHONUNBUFFERED": "1",
    }
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = database_url_for_current_test_db()
    else:
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env["SQLITE_PATH"] = str(tmp_path / "server.sqlite3")
    return env


def _manage(env: dict[str, str], *arguments: str) -> None:
    subprocess.run(  # noqa: S603 - this interpreter and manage.py
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture
def asgi_server(tmp_path: Path) -> Iterator[Server]:
    env = _server_environment(tmp_path)
    if connection.vendor != "postgresql":
        _manage(env, "migrate", "--no-input")  # pytest's SQLite database is in memory
    _manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": STAFF_PASSWORD},
        "createsuperuser",
        "--no-input",
        "--username",
        STAFF_USERNAME,
        "--email",
        "ops@example.com",
    )
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "uvicorn",
                "emporium.dashboard.tests.asgi_with_static:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "off",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)

    def answers() -> bool:
        try:
            return httpx.get(f"{server.url}/dashboard/login/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None  # stop waiting for a server that died

    try:
        if not wait_until(answers, timeout=90, interval=0.2) or process.poll() is not None:
            raise RuntimeError(f"the ASGI server did not start:\n{server.log()}")
        yield server
    finally:
        stop_process(process)


class Api:
    """The JSON API of the server under test, as a client sees it."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def call(
        self, method: str, path: str, *, token: str | None = None, expect: int = 200, **kw: Any
    ) -> Any:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self.client.request(method, path, headers=headers, **kw)
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def login(self, username: str, password: str) -> str:
        tokens = self.call(
            "POST", "/api/auth/login/", json={"username": username, "password": password}
        )
        return str(tokens["access"])


def _points(device_id: int, start: datetime, route: list[tuple[float, float]]) -> str:
    import json

    return json.dumps(
        [
            {
                "device_id": device_id,
                "timestamp": (start + timedelta(seconds=index)).isoformat().replace("+00:00", "Z"),
                "latitude": latitude,
                "longitude": longitude,
            }
            for index, (latitude, longitude) in enumerate(route)
        ]
    )


def _require_bundle() -> None:
    if finders.find(BUNDLE) is None:
        problem = f"the dashboard script {BUNDLE} is not built (make frontend)"
        if REQUIRE_SERVICES:
            pytest.fail(f"EMPORIUM_REQUIRE_SERVICES=1 but {problem}")
        pytest.skip(problem)


def _last_value(page: Any, chart: str, dataset: int = 0) -> Any:
    return page.evaluate(
        """([chart, dataset]) => {
            const data = window.emporiumDashboard.charts[chart].data.datasets[dataset].data;
            return data.length ? data[data.length - 1].y : null;
        }""",
        [chart, dataset],
    )


def _page_state(page: Any) -> Any:
    """What the page knows, for a failure message."""
    try:
        return page.evaluate(
            """() => {
                const state = window.emporiumDashboard;
                if (!state) return {url: location.href};
                return {
                    url: location.href,
                    connection: state.connection,
                    metricsReceived: state.metricsReceived,
                    positionsReceived: state.positionsReceived,
                    lastMetrics: state.lastMetrics,
                    devices: document.querySelector("#positions-map").dataset.devices,
                };
            }"""
        )
    except Exception as error:  # the page may be gone
        return f"unavailable: {error}"


@pytest.mark.django_db(transaction=True)
def test_dashboard_follows_telemetry_and_orders_live(asgi_server: Server) -> None:
    _require_bundle()
    api = Api(asgi_server.url)

    # What the staff member and the customer will need: a product, a device, a customer.
    staff_token = api.login(STAFF_USERNAME, STAFF_PASSWORD)
    category = api.call(
        "POST", "/api/categories/", token=staff_token, expect=201, json={"name": "Tea"}
    )
    product = api.call(
        "POST",
        "/api/products/",
        token=staff_token,
        expect=201,
        json={
            "sku": "TEA-001",
            "name": "Green tea",
            "description": "Loose leaf.",
            "price": "12.50",
            "stock_quantity": 10,
            "category": category["id"],
        },
    )
    device = api.call(
        "POST", "/api/devices/", token=staff_token, expect=201, json={"name": "van 7"}
    )
    api.call(
        "POST",
        "/api/auth/register/",
        expect=201,
        json={
            "username": "petra",
            "email": "petra@example.com",
            "password": "a-long-customer-password-9",
        },
    )
    customer_token = api.login("petra", "a-long-customer-password-9")

    with browser_page() as (page, problems):
        page.set_default_timeout(WAIT_MS)
        try:
            # Anonymous: sent to the sign-in form, then back to the dashboard.
            page.goto(f"{asgi_server.url}/dashboard/")
            page.wait_for_url("**/dashboard/login/?next=/dashboard/")
            page.get_by_label("Username").fill(STAFF_USERNAME)
            page.get_by_label("Password").fill(STAFF_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{asgi_server.url}/dashboard/")

            page.wait_for_function(
                "() => window.emporiumDashboard && window.emporiumDashboard.connection === 'open'"
            )
            assert page.locator("#connection").inner_text() == "Live"
            page.wait_for_function("() => window.emporiumDashboard.metricsReceived >= 2")
            # The figures the page got so far: nothing has been ordered or reported yet.
            assert _last_value(page, "orders") == 0
            assert _last_value(page, "telemetry") == 0
            assert page.locator("#positions-map").get_attribute("data-devices") in (None, "0")
            # This page's own socket is open, and counted.
            page.wait_for_function(
                "() => window.emporiumDashboard.lastMetrics.websocket_connections >= 1"
            )

            # A courier reports three points.
            start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(seconds=30)
            route = [(52.5200, 13.4050), (52.5210, 13.4065), (52.5222, 13.4080)]
            result = api.call(
                "POST",
                "/api/telemetry/",
                headers={
                    "Authorization": f"Device {device['token']}",
                    "Content-Type": "application/json",
                },
                content=_points(device["id"], start, route),
            )
            assert result["accepted"] == 3

            marker = page.locator(f'#positions-map circle[data-device-id="{device["id"]}"]')
            marker.wait_for(state="attached")
            page.wait_for_function(
                """([id, latitude]) => {
                    const marker = document.querySelector(
                        `#positions-map circle[data-device-id="${id}"]`);
                    return marker && Number(marker.dataset.latitude) === latitude;
                }""",
                arg=[device["id"], route[-1][0]],
            )
            first_position = (marker.get_attribute("cx"), marker.get_attribute("cy"))
            assert page.locator("#positions-map").get_attribute("data-devices") == "1"
            assert (
                page.locator(f'li[data-device-id="{device["id"]}"]')
                .inner_text()
                .startswith(f"Device {device['id']}")
            )
            # The points per second chart has seen them.
            page.wait_for_function(
                """() => window.emporiumDashboard.charts.telemetry.data.datasets[0].data
                    .some((point) => point.y > 0)"""
            )

            # The courier moves on: the marker moves and leaves a trail.
            later = start + timedelta(seconds=len(route))
            api.call(
                "POST",
                "/api/telemetry/",
                headers={
                    "Authorization": f"Device {device['token']}",
                    "Content-Type": "application/json",
                },
                content=_points(device["id"], later, [(52.5300, 13.4200)]),
            )
            page.wait_for_function(
                """([id, latitude]) => {
                    const marker = document.querySelector(
                        `#positions-map circle[data-device-id="${id}"]`);
                    return marker && Number(marker.dataset.latitude) === latitude;
                }""",
                arg=[device["id"], 52.53],
            )
            assert (marker.get_attribute("cx"), marker.get_attribute("cy")) != first_position
            assert page.locator(f'polyline[data-device-id="{device["id"]}"]').count() == 1

            # A customer places an order: the orders and revenue charts go up.
            api.call(
                "POST",
                "/api/cart/items/",
                token=customer_token,
                expect=201,
                json={"product": product["id"], "quantity": 2},
            )
            order = api.call("POST", "/api/orders/", token=customer_token, expect=201)
            assert order["total_amount"] == "25.00"
            page.wait_for_function(
                """() => {
                    const charts = window.emporiumDashboard.charts;
                    const last = (chart) => chart.data.datasets[0].data.at(-1).y;
                    return last(charts.orders) === 1 && last(charts.revenue) === 25;
                }"""
            )
            assert page.locator("#figure-orders_per_minute").inner_text() == "1"
            assert page.locator("#figure-revenue_per_minute").inner_text() == "25.00"
            # The API requests above were timed: the API chart has a rate and a p95.
            page.wait_for_function(
                """() => window.emporiumDashboard.charts.api.data.datasets[0].data
                    .some((point) => point.y > 0)
                  && window.emporiumDashboard.charts.api.data.datasets[1].data
                    .some((point) => point.y > 0)"""
            )
        except Exception as error:
            raise AssertionError(
                f"{error}\nbrowser problems: {problems}\npage: {_page_state(page)}\n"
                f"server log:\n{asgi_server.log()[-5000:]}"
            ) from error
    assert problems == [], asgi_server.log()


def _telemetry(api: Api, device: Any, start: datetime, route: list[tuple[float, float]]) -> None:
    result = api.call(
        "POST",
        "/api/telemetry/",
        headers={"Authorization": f"Device {device['token']}", "Content-Type": "application/json"},
        content=_points(device["id"], start, route),
    )
    assert result["accepted"] == len(route)


def _sign_in(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/dashboard/login/?next=/dashboard/")
    page.get_by_label("Username").fill(STAFF_USERNAME)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/dashboard/")


@pytest.mark.django_db(transaction=True)
def test_dashboard_starts_with_history_a_scale_bar_and_separate_labels(
    asgi_server: Server,
) -> None:
    _require_bundle()
    api = Api(asgi_server.url)
    staff_token = api.login(STAFF_USERNAME, STAFF_PASSWORD)
    # Traffic and telemetry before anyone opens the page: the charts must show them at once.
    devices = [
        api.call("POST", "/api/devices/", token=staff_token, expect=201, json={"name": name})
        for name in ("van 20", "van 7")
    ]
    start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(seconds=20)
    # Two couriers 20 m apart: at any zoom their labels would sit side by side.
    _telemetry(api, devices[0], start, [(52.52000, 13.40500), (52.52010, 13.40510)])
    _telemetry(api, devices[1], start, [(52.52000, 13.40530), (52.52005, 13.40540)])
    for _ in range(5):
        api.call("GET", "/api/categories/")
    # Every process flushes its counts to the shared store within about a second.
    flushed_by = datetime.now(tz=UTC) + timedelta(seconds=2.5)
    wait_until(lambda: datetime.now(tz=UTC) >= flushed_by, timeout=10, interval=0.1)
    opened_at_ms = datetime.now(tz=UTC).timestamp() * 1000

    with browser_page() as (page, problems):
        page.set_default_timeout(WAIT_MS)
        try:
            _sign_in(page, asgi_server)
            page.wait_for_function("() => window.emporiumDashboard !== undefined")
            history = page.evaluate("() => window.emporiumDashboard.historyPoints")
            assert history >= 120, history
            # The history drew points from before the page was opened: requests, p95
            # and telemetry points per second above zero.
            seeded = page.evaluate(
                """(openedAt) => {
                    const charts = window.emporiumDashboard.charts;
                    const before = (chart, dataset) => chart.data.datasets[dataset].data
                        .filter((point) => point.x < openedAt);
                    return {
                        requests: before(charts.api, 0).some((point) => point.y > 0),
                        p95: before(charts.api, 1).some((point) => point.y > 0),
                        telemetry: before(charts.telemetry, 0).some((point) => point.y > 0),
                        orders: before(charts.orders, 0).length,
                    };
                }""",
                opened_at_ms,
            )
            assert seeded["requests"], seeded
            assert seeded["p95"], seeded
            assert seeded["telemetry"], seeded
            assert seeded["orders"] >= 120, seeded

            # The live stream carries on from where the history ends.
            page.wait_for_function("() => window.emporiumDashboard.metricsReceived >= 1")
            page.wait_for_function("() => window.emporiumDashboard.connection === 'open'")

            # The couriers report again, now that the page listens.
            later = start + timedelta(seconds=10)
            _telemetry(api, devices[0], later, [(52.52020, 13.40520)])
            _telemetry(api, devices[1], later, [(52.52010, 13.40550)])
            page.wait_for_function(
                "() => document.querySelector('#positions-map').dataset.devices === '2'"
            )
            # The map has a scale bar with a round length, and both couriers' labels...
            scale = page.locator("#positions-scale")
            assert float(scale.get_attribute("data-metres") or 0) > 0
            assert float(scale.get_attribute("data-pixels") or 0) > 20
            assert (page.locator("#positions-scale text").first.text_content() or "").endswith(" m")
            # ...read apart: no two label boxes overlap, and none covers a marker.
            overlaps = page.evaluate(
                """() => {
                    const boxes = (selector) => [...document.querySelectorAll(selector)]
                        .map((node) => node.getBBox());
                    const labels = boxes("#positions-map text.marker-label");
                    const markers = boxes("#positions-map circle.marker");
                    const meet = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width
                        && a.y < b.y + b.height && b.y < a.y + a.height;
                    const found = [];
                    labels.forEach((label, i) => {
                        labels.slice(i + 1).forEach((other) => {
                            if (meet(label, other)) found.push(["label", i]);
                        });
                        markers.forEach((marker) => {
                            if (meet(label, marker)) found.push(["marker", i]);
                        });
                    });
                    return {labels: labels.length, found};
                }"""
            )
            assert overlaps == {"labels": 2, "found": []}, overlaps
        except Exception as error:
            raise AssertionError(
                f"{error}\nbrowser problems: {problems}\npage: {_page_state(page)}\n"
                f"server log:\n{asgi_server.log()[-5000:]}"
            ) from error
    # No console error, page error or failed request from first paint to here.
    assert problems == [], asgi_server.log()
