"""The request histogram, the per-process counts and their sum in the shared store."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import caches
from django.test import Client

from emporium.dashboard import collector
from emporium.dashboard.collector import (
    BUCKET_BOUNDS_MS,
    PERCENTILE_RELATIVE_ERROR,
    LocalCounts,
    SecondCounts,
    bucket_of,
    percentile,
    second_store,
    traffic_figures,
)
from emporium.dashboard.tests.support import nearest_rank

ROOT = Path(__file__).resolve().parents[3]


def histogram_of(values: list[float]) -> dict[int, int]:
    histogram: dict[int, int] = {}
    for value in values:
        index = bucket_of(value)
        histogram[index] = histogram.get(index, 0) + 1
    return histogram


def samples(kind: str, rng: random.Random, size: int) -> list[float]:
    if kind == "lognormal":  # the usual shape of request latencies
        return [rng.lognormvariate(3.0, 0.8) for _ in range(size)]
    if kind == "bimodal":  # cache hits and misses
        return [
            rng.uniform(0.5, 2.0) if rng.random() < 0.9 else rng.uniform(80, 400)
            for _ in range(size)
        ]
    if kind == "uniform":
        return [rng.uniform(0.2, 5_000.0) for _ in range(size)]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["lognormal", "bimodal", "uniform"])
@pytest.mark.parametrize("size", [1, 7, 100, 5_000])
@pytest.mark.parametrize("quantile", [0.5, 0.95, 0.99, 1.0])
def test_percentile_is_within_the_bucket_error_of_the_exact_one(
    kind: str, size: int, quantile: float
) -> None:
    rng = random.Random(f"{kind}-{size}-{quantile}")
    values = samples(kind, rng, size)

    estimate = percentile(histogram_of(values), quantile)
    exact = nearest_rank(values, quantile)

    assert estimate is not None
    assert abs(estimate - exact) / exact <= PERCENTILE_RELATIVE_ERROR + 1e-12


def test_percentile_of_known_values() -> None:
    # 100 requests: 94 at 10 ms, 6 at 500 ms. Rank 95 is a 500 ms one.
    values = [10.0] * 94 + [500.0] * 6
    p95 = percentile(histogram_of(values), 0.95)
    assert p95 is not None
    assert 500.0 / (1 + PERCENTILE_RELATIVE_ERROR) <= p95 <= 500.0 * (1 + PERCENTILE_RELATIVE_ERROR)
    # With 95 fast ones, rank 95 is fast.
    values = [10.0] * 95 + [500.0] * 5
    p95 = percentile(histogram_of(values), 0.95)
    assert p95 is not None
    assert abs(p95 - 10.0) / 10.0 <= PERCENTILE_RELATIVE_ERROR


def test_percentile_of_nothing_and_bad_quantiles() -> None:
    assert percentile({}, 0.95) is None
    with pytest.raises(ValueError, match="quantile"):
        percentile({1: 1}, 0.0)
    with pytest.raises(ValueError, match="quantile"):
        percentile({1: 1}, 1.5)


def test_bucket_edges() -> None:
    assert bucket_of(0.0) == 0
    assert bucket_of(BUCKET_BOUNDS_MS[0]) == 0
    assert bucket_of(BUCKET_BOUNDS_MS[10]) == 10  # a bound belongs to its own bucket
    assert bucket_of(BUCKET_BOUNDS_MS[10] * 1.0000001) == 11
    assert bucket_of(10**9) == len(BUCKET_BOUNDS_MS) - 1  # slower than five minutes


def test_second_counts_round_trip_through_store_fields() -> None:
    counts = SecondCounts(requests={3: 2, 140: 1}, telemetry_points=25)
    stored = {name.encode(): str(value).encode() for name, value in counts.as_fields().items()}
    assert SecondCounts.from_fields(stored) == counts


def test_two_processes_add_up_in_the_shared_store() -> None:
    """Two processes' worth of counts, partly in the same seconds, read back as one."""
    store = second_store()
    rng = random.Random(5)
    now = int(time.time())
    first, second = LocalCounts(), LocalCounts()
    durations: list[float] = []
    for counts, share in ((first, 0.3), (second, 0.7)):
        for offset in range(5):
            for _ in range(int(200 * share)):
                duration = rng.lognormvariate(2.5, 1.0)
                durations.append(duration)
                counts.request(duration_ms=duration, second=now - 5 + offset)
    first.telemetry_points(count=120, second=now - 3)
    second.telemetry_points(count=80, second=now - 3)
    second.telemetry_points(count=50, second=now - 1)
    # Outside the window read below: must not be counted.
    first.request(duration_ms=1.0, second=now - 6)
    second.telemetry_points(count=999, second=now)

    # The first process flushes twice (additions are additive), the second once.
    assert first.flush(store) == 6
    first.request(duration_ms=7.5, second=now - 1)
    durations.append(7.5)
    assert first.flush(store) == 1
    assert second.flush(store) == 6
    assert first.take() == {}
    assert second.take() == {}

    figures = traffic_figures(last_second=now - 1, window_seconds=5, store=store)

    assert figures.requests_per_second == len(durations) / 5
    assert figures.telemetry_points_per_second == (120 + 80 + 50) / 5
    assert figures.p95_ms is not None
    exact = nearest_rank(durations, 0.95)
    assert abs(figures.p95_ms - exact) / exact <= PERCENTILE_RELATIVE_ERROR + 1e-12


def test_an_empty_window_reads_as_zero() -> None:
    figures = traffic_figures(last_second=int(time.time()) - 1, window_seconds=5)
    assert figures.requests_per_second == 0
    assert figures.p95_ms is None
    assert figures.telemetry_points_per_second == 0


_CHILD = """
import django, sys
django.setup()
from emporium.dashboard.collector import LocalCounts, second_store
second, count, duration = (float(value) for value in sys.argv[1:4])
counts = LocalCounts()
for _ in range(int(count)):
    counts.request(duration_ms=duration, second=int(second))
counts.telemetry_points(count=int(count), second=int(second))
counts.flush(second_store())
"""


def test_real_processes_flushing_to_redis_add_up(redis_url: str) -> None:
    """Two OS processes flush into Redis; a third reader sees their sum."""
    second = int(time.time()) - 2
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "REDIS_URL": redis_url}
    for count, duration in ((30, 5.0), (10, 300.0)):
        subprocess.run(  # noqa: S603 - this interpreter, a fixed script
            [sys.executable, "-c", _CHILD, str(second), str(count), str(duration)],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
        )

    store = second_store()
    assert type(store).__name__ == "RedisSecondStore"
    total = store.read([second])
    assert sum(total.requests.values()) == 40
    assert total.requests == {bucket_of(5.0): 30, bucket_of(300.0): 10}
    assert total.telemetry_points == 40
    # 30 of 40 are fast: rank 38 (p95) is a slow one.
    p95 = percentile(total.requests, 0.95)
    assert p95 is not None
    assert abs(p95 - 300.0) / 300.0 <= PERCENTILE_RELATIVE_ERROR


def test_the_store_forgets_old_seconds() -> None:
    store = second_store()
    store.add({100: SecondCounts(requests={1: 1})})
    if type(store).__name__ == "RedisSecondStore":
        from django_redis import get_redis_connection

        ttl = get_redis_connection("default").ttl(
            caches["default"].make_key("dashboard:second:100")
        )
        assert 0 < ttl <= collector.SECOND_TTL_SECONDS
    assert store.read([100]).requests == {1: 1}


@pytest.mark.django_db
def test_requests_are_counted_by_the_middleware_except_the_dashboards_own(
    client: Client, process_counts: LocalCounts
) -> None:
    before = int(time.time())
    client.get("/api/products/")
    client.get("/api/no-such-endpoint/")
    client.get("/dashboard/")
    client.get("/dashboard/login/")
    client.get("/static/dashboard/dashboard.css")
    after = int(time.time())

    taken = process_counts.take()
    assert set(taken) <= set(range(before, after + 1))
    assert sum(sum(counts.requests.values()) for counts in taken.values()) == 2
    assert all(counts.telemetry_points == 0 for counts in taken.values())


def test_the_flusher_thread_writes_what_requests_recorded_within_a_second_or_two() -> None:
    from tests.support.processes import wait_until

    unusual = 123_456.0  # no real request in this suite takes two minutes
    second = int(time.time())
    for _ in range(3):
        collector.request_record(duration_ms=unusual, finished_at=second + 0.5)
    collector.telemetry_points_record(count=0)  # nothing to count: no-op

    store = second_store()

    def flushed() -> bool:
        return store.read([second]).requests.get(bucket_of(unusual)) == 3

    assert wait_until(flushed, timeout=30, interval=0.1)
