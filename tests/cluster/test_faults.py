"""Faults under load on `make cluster`, the short form of `make bench SCENARIO=faults`.

A cluster with the TCP fault proxy between the app and PostgreSQL, Redis and
RabbitMQ takes a bounded mixed load through nginx (catalog, search, checkouts
and payments retried with their Idempotency-Keys, telemetry, WebSockets) while
Redis is stopped, the broker cut, the replica stopped, 200 ms of latency added,
connections reset and a burst sent past the database pools. No acknowledged
order or payment may be lost or doubled, no answer may be a 500 or hang, reads
must keep answering, and the outbox and payments must settle afterwards.
(kill -9 of an app server is tests/cluster/test_cluster.py's.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.cluster import Cluster
from bench.faults import report, run, start_cluster
from conftest import require_service

pytestmark = [pytest.mark.cluster]

FAULTS = ["redis", "broker", "replica", "latency", "resets", "burst"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require_service("BROKER_URL")
    require_service("DATABASE_URL")
    running = start_cluster("faults-test", CLUSTER_BUYERS="400")
    try:
        yield running
    finally:
        running.stop()


def test_no_acknowledged_order_or_payment_is_lost_under_faults(cluster: Cluster) -> None:
    problems, counts, load = run(
        cluster, FAULTS, outage=5, phase_seconds=2.5, readers=2, buyers=2, settle_seconds=180
    )
    report(load, counts)
    assert problems == []
    final = dict(counts)["end"]
    assert final["orders acknowledged"] > 10  # the load really ran through the faults
    assert final["payments acknowledged"] > 10
    # The burst went past the pools: some were refused 503 (with Retry-After, checked
    # above), none was a 500, and the ones refused placed nothing.
    burst = (
        load.tally.outcomes[("burst", "burst read")]
        + load.tally.outcomes[("burst", "burst checkout")]
    )
    assert any(outcome.startswith("503 service_busy") for outcome in burst), burst
    # Reads and checkouts went on while Redis and the broker were away.
    for fault in ("redis", "broker"):
        outcomes = load.tally.outcomes[(fault, "catalog uncached")]
        assert outcomes["200"] > 0, outcomes
        assert load.acknowledged_in[fault] > 0
