"""GET /metrics and what the web processes count: requests, statements, cache reads.

Requests go through Django's test client, so through the whole middleware
stack; the values are read from this process's registry (no multiprocess
directory in tests) and compared before and after.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from emporium.catalog.tests.support import PRODUCT_LIST_URL, product_url
from emporium.core.cache import local_state_reset
from emporium.core.tests.factories import CategoryFactory, ProductFactory
from emporium.observability import metrics
from emporium.observability.instrumentation import route_label
from emporium.observability.tests.metric_samples import sample

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
CATEGORIES_ROUTE = "api/categories/"
# A token that passes the secret checks (random, long): never a real one.
TOKEN = "pXk3vQ9-Zt7Lw2Rb8Ny5Hc1Jd6Fg4Ms0Ae3Ui8Oo2Yr7Tx5Ws9Qv1Kz6Bn4Lm0Cp"


def requests_counted(route: str, status: str = "200", method: str = "GET") -> float:
    return sample("emporium_http_requests_total", route=route, method=method, status=status)


def total_requests_counted() -> float:
    return sum(
        s.value
        for family in REGISTRY.collect()
        if family.name == "emporium_http_requests"
        for s in family.samples
        if s.name == "emporium_http_requests_total"
    )


def test_a_request_is_counted_by_route_method_and_status_with_its_time_and_statements(
    client: Client,
) -> None:
    CategoryFactory()
    before = requests_counted(CATEGORIES_ROUTE)
    durations = sample(
        "emporium_http_request_duration_seconds_count", route=CATEGORIES_ROUTE, method="GET"
    )
    queries = sample("emporium_http_request_db_queries_sum", route=CATEGORIES_ROUTE)
    db_time = sample("emporium_http_request_db_duration_seconds_sum", route=CATEGORIES_ROUTE)

    assert client.get("/api/categories/").status_code == 200

    assert requests_counted(CATEGORIES_ROUTE) == before + 1
    assert (
        sample("emporium_http_request_duration_seconds_count", route=CATEGORIES_ROUTE, method="GET")
        == durations + 1
    )
    assert sample("emporium_http_request_db_queries_sum", route=CATEGORIES_ROUTE) >= queries + 1
    assert sample("emporium_http_request_db_duration_seconds_sum", route=CATEGORIES_ROUTE) > db_time


def test_a_path_no_pattern_matches_is_counted_as_unmatched_not_by_its_path(
    client: Client,
) -> None:
    before = requests_counted("unmatched", status="404")

    assert client.get("/no/such/page-12345").status_code == 404

    assert requests_counted("unmatched", status="404") == before + 1
    assert "page-12345" not in client.get("/metrics").content.decode()


@pytest.mark.parametrize(
    ("pattern", "label"),
    [
        ("api/categories/$", "api/categories/"),
        (r"api/orders/(?P<pk>\d+)/$", "api/orders/<pk>/"),
        ("^api/products/(?P<pk>[^/.]+)/$", "api/products/<pk>/"),
        ("api/orders/<int:order_pk>/payments/", "api/orders/<int:order_pk>/payments/"),
    ],
)
def test_routes_are_labelled_as_patterns_read(pattern: str, label: str) -> None:
    assert route_label(pattern) == label


def test_probes_and_scrapes_are_not_counted(client: Client) -> None:
    before = total_requests_counted()

    for path in ("/healthz", "/readyz", "/health/live", "/health/ready", "/metrics"):
        assert client.get(path).status_code == 200, path

    assert total_requests_counted() == before


def test_a_made_up_method_is_counted_as_other(client: Client) -> None:
    before = sample(
        "emporium_http_requests_total", route=CATEGORIES_ROUTE, method="other", status="405"
    )

    client.generic("BREW", "/api/categories/")

    assert (
        sample("emporium_http_requests_total", route=CATEGORIES_ROUTE, method="other", status="405")
        == before + 1
    )


# -- who may read /metrics ---------------------------------------------------------------


def test_metrics_answer_a_loopback_client_in_the_text_format(client: Client) -> None:
    client.get("/api/categories/")

    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-cache" in response["Cache-Control"]
    assert f'emporium_http_requests_total{{method="GET",route="{CATEGORIES_ROUTE}"' in (
        response.content.decode()
    )
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_metrics_are_a_404_like_any_unknown_path_to_anyone_else(client: Client) -> None:
    unknown = client.get("/no-such-endpoint", REMOTE_ADDR="203.0.113.9")

    refused = client.get("/metrics", REMOTE_ADDR="203.0.113.9")

    assert refused.status_code == 404
    assert refused.json() == unknown.json()
    assert client.post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404
    for method in ("TRACE", "BREW", "OPTIONS"):  # not even a 405 tells it is there
        assert client.generic(method, "/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404


@override_settings(METRICS_TOKEN=TOKEN)
def test_the_bearer_token_opens_metrics_from_any_address(client: Client) -> None:
    outside = {"REMOTE_ADDR": "203.0.113.9"}

    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **outside).status_code == (
        200
    )
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x", **outside).status_code == (
        404
    )
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}", **outside).status_code == (
        404
    )
    assert client.get("/metrics", **outside).status_code == 404


def test_the_allowed_networks_open_metrics_to_their_addresses(client: Client) -> None:
    from config.settings.env import networks_parse

    networks = networks_parse("METRICS_ALLOWED_NETWORKS", ["10.0.0.0/8", "2001:db8::/32"])
    with override_settings(METRICS_ALLOWED_NETWORKS=networks):
        assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="2001:db8::5").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404
        assert client.get("/metrics", REMOTE_ADDR="11.0.0.1").status_code == 404


def test_a_forwarded_address_opens_nothing_without_trusted_proxies(client: Client) -> None:
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")

    assert response.status_code == 404


# -- cache reads ---------------------------------------------------------------------------


@override_settings(CATALOG_CACHE_ENABLED=True)
def test_catalog_reads_are_counted_as_misses_then_hits_by_namespace_family(
    client: Client,
) -> None:
    local_state_reset()
    product = ProductFactory()

    def counted(namespace: str, result: str) -> float:
        return sample("emporium_cache_requests_total", namespace=namespace, result=result)

    before = {
        (namespace, result): counted(namespace, result)
        for namespace in ("catalog.products", "catalog.product")
        for result in ("hit", "miss")
    }

    for _ in range(2):
        assert client.get(PRODUCT_LIST_URL).status_code == 200
        assert client.get(product_url(product.pk)).status_code == 200

    for namespace in ("catalog.products", "catalog.product"):
        assert counted(namespace, "miss") == before[namespace, "miss"] + 1, namespace
        assert counted(namespace, "hit") == before[namespace, "hit"] + 1, namespace
    assert f"catalog.product.{product.pk}" not in client.get("/metrics").content.decode()


# -- METRICS_ENABLED ---------------------------------------------------------------------


def test_with_metrics_off_nothing_is_counted_and_metrics_are_a_404(client: Client) -> None:
    CategoryFactory()
    with override_settings(METRICS_ENABLED=False):
        off = Client()  # its middleware is built with the setting off
        before = requests_counted(CATEGORIES_ROUTE)

        assert off.get("/api/categories/").status_code == 200
        assert off.get("/metrics").status_code == 404

        assert requests_counted(CATEGORIES_ROUTE) == before


def test_with_metrics_off_no_statement_is_wrapped() -> None:
    """A process started with METRICS_ENABLED=false puts no wrapper on its connections."""
    script = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "connection.ensure_connection()\n"
        "print(len(connection.execute_wrappers))\n"
    )
    results = {}
    for enabled in ("true", "false"):
        env = {**os.environ, "METRICS_ENABLED": enabled}
        env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
        completed = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        results[enabled] = completed.stdout.strip().splitlines()[-1]

    assert results == {"true": "1", "false": "0"}


# -- several processes: counts added up in memory, written once a second ---------------------


def test_buffered_counts_are_written_as_observe_would_write_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics._pending, "buffering", True)
    route = "test/buffered/"
    key = (route, "GET", 200)

    for seconds in (0.0004, 0.003, 0.003, 7.0, 30.0):
        metrics.http_request_count(key, seconds=seconds, queries=2, db_seconds=0.002)
    metrics.cache_read_record(["catalog", "catalog.product.7"], hit=True)
    hits_before = sample("emporium_cache_requests_total", namespace="catalog.product", result="hit")

    assert sample("emporium_http_requests_total", route=route, method="GET", status="200") == 0

    metrics.pending_flush()

    assert sample("emporium_http_requests_total", route=route, method="GET", status="200") == 5

    def duration(suffix: str, **labels: str) -> float:
        return sample(
            f"emporium_http_request_duration_seconds{suffix}", route=route, method="GET", **labels
        )

    assert duration("_count") == 5
    assert duration("_sum") == pytest.approx(37.0064)
    assert duration("_bucket", le="0.001") == 1
    assert duration("_bucket", le="0.0025") == 1
    assert duration("_bucket", le="0.005") == 3
    assert duration("_bucket", le="10.0") == 4
    assert duration("_bucket", le="+Inf") == 5
    assert sample("emporium_http_request_db_queries_bucket", route=route, le="1.0") == 0
    assert sample("emporium_http_request_db_queries_bucket", route=route, le="2.0") == 5
    assert sample("emporium_http_request_db_duration_seconds_sum", route=route) == pytest.approx(
        0.01
    )
    assert (
        sample("emporium_cache_requests_total", namespace="catalog.product", result="hit")
        == hits_before + 1
    )


def _finished_process_id() -> int:
    """The id of a process that has run and exited."""
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(finished.stdout)


def _gauge_file(directory: Path, pid: int) -> Path:
    path = directory / f"gauge_livesum_{pid}.db"
    file = MmapedDict(str(path))
    file.write_value(mmap_key("g", "g", [], [], "a gauge"), 1.0, 0.0)
    file.close()
    return path


def test_a_scrape_forgets_the_live_gauges_of_processes_that_no_longer_run(
    tmp_path: Path,
) -> None:
    dead = _gauge_file(tmp_path, _finished_process_id())
    alive = _gauge_file(tmp_path, os.getpid())

    metrics.exited_workers_forget(str(tmp_path))

    assert not dead.exists()
    assert alive.exists()


def test_each_server_start_gets_an_empty_directory_and_dead_servers_lose_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(
        metrics.environment,
        "ENV",
        dataclasses.replace(metrics.environment.ENV, prometheus_multiproc_dir=None),
    )
    stale = tmp_path / f"emporium-metrics-{_finished_process_id()}"
    stale.mkdir()
    running = tmp_path / f"emporium-metrics-{os.getppid()}"
    running.mkdir()
    (tmp_path / f"emporium-metrics-{os.getpid()}").mkdir()
    (tmp_path / f"emporium-metrics-{os.getpid()}" / "counter_1.db").write_bytes(b"old")

    directory = metrics.multiprocess_directory_prepare(server_pid=os.getpid())

    assert directory == tmp_path / f"emporium-metrics-{os.getpid()}"
    assert list(directory.iterdir()) == []
    assert not stale.exists()
    assert running.exists()
