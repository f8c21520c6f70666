"""The relay's view of the backlog: outbox events waiting, and the depth of real RabbitMQ queues.

The queue tests publish to a queue of their own on the real broker (the work
queues are shared with whatever else runs); the relay test runs
``manage.py outbox_relay`` as its own process, on the test database, with the
broker behind a TCP proxy it cuts and restores, and reads the relay's /metrics.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from kombu import Connection, Producer

from emporium.integrations import events
from emporium.integrations.backlog import queue_depths, queue_depths_measure
from emporium.integrations.models import OutboxEvent
from emporium.integrations.selectors import outbox_backlog
from emporium.integrations.tests.support import broker_address, through_proxy, work_queues_declare
from emporium.observability.tests.metric_samples import sample, scraped
from tests.support.processes import (
    ROOT,
    TcpProxy,
    database_url_for_current_test_db,
    free_port,
    stop_process,
    wait_until,
)


def record(count: int) -> None:
    with transaction.atomic():
        for number in range(count):
            events.event_record(
                event_type="test.backlog",
                aggregate_type="test",
                aggregate_id=number,
                payload={"n": number},
            )


# -- the outbox ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_backlog_is_the_unpublished_events_and_the_oldest_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "_after_commit_hooks", [])  # nothing relays them here
    assert outbox_backlog().events == 0
    assert outbox_backlog().oldest_created_at is None

    record(3)
    first = OutboxEvent.objects.order_by("created_at").first()
    assert first is not None
    OutboxEvent.objects.filter(pk=first.pk).update(published_at=first.created_at)

    backlog = outbox_backlog()
    oldest = OutboxEvent.objects.filter(published_at__isnull=True).order_by("created_at")[0]
    assert (backlog.events, backlog.oldest_created_at) == (2, oldest.created_at)


# -- queue depths ----------------------------------------------------------------------


@pytest.fixture
def private_queue(broker_url: str) -> Iterator[str]:
    name = f"emporium.test.depth.{uuid.uuid4().hex[:12]}"
    with Connection(broker_url, connect_timeout=5) as broker:
        channel: Any = broker.channel()
        channel.queue_declare(name, durable=False, auto_delete=False)
        channel.close()
        yield name
        channel = broker.channel()
        channel.queue_delete(name)
        channel.close()


def publish(broker_url: str, queue: str, count: int) -> None:
    with Connection(broker_url, connect_timeout=5) as broker:
        producer = Producer(broker.default_channel)
        for number in range(count):
            producer.publish({"n": number}, routing_key=queue, exchange="", serializer="json")


def take(broker_url: str, queue: str, count: int) -> None:
    with Connection(broker_url, connect_timeout=5) as broker:
        channel: Any = broker.default_channel
        for _ in range(count):
            message = channel.basic_get(queue, no_ack=True)
            assert message is not None


def _ready(queue: str) -> float:
    return sample("emporium_queue_messages", queue=queue)


def test_queue_depth_follows_the_messages_published_and_taken(
    broker_url: str, private_queue: str
) -> None:
    absent = f"emporium.test.absent.{uuid.uuid4().hex[:12]}"
    publish(broker_url, private_queue, 5)

    queue_depths_measure(broker_url=broker_url, queues=[private_queue, absent])
    assert _ready(private_queue) == 5
    assert sample("emporium_queue_consumers", queue=private_queue) == 0
    # A queue nobody declared is not reported (and declaring passively did not create it).
    assert "emporium_queue_messages" not in _series_with_label("queue", absent)
    assert queue_depths(broker_url=broker_url, queues=[absent]) == []

    take(broker_url, private_queue, 2)
    queue_depths_measure(broker_url=broker_url, queues=[private_queue])
    assert _ready(private_queue) == 3


def _series_with_label(label: str, value: str) -> set[str]:
    from prometheus_client import REGISTRY

    return {
        sample.name
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.labels.get(label) == value
    }


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word (a hung broker)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in accepted:
        connection.close()


def test_a_broker_that_never_answers_withdraws_the_depths_instead_of_hanging(
    broker_url: str, private_queue: str, silent_broker: int
) -> None:
    publish(broker_url, private_queue, 1)
    queue_depths_measure(broker_url=broker_url, queues=[private_queue])
    assert _ready(private_queue) == 1
    hung = f"amqp://guest:guest@127.0.0.1:{silent_broker}//"

    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017, PT011 - whichever error the timeout raises
        queue_depths_measure(broker_url=hung, queues=[private_queue])

    assert time.monotonic() - started < 15  # bounded by the timeouts, not hanging
    assert "emporium_queue_messages" not in _series_with_label("queue", private_queue)


# -- the relay process -------------------------------------------------------------------


class RelayProcess:
    def __init__(self, *, broker_url: str, metrics_port: int, log_path: Path) -> None:
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "outbox_relay"],
                cwd=ROOT,
                env={
                    **os.environ,
                    "DJANGO_SETTINGS_MODULE": "config.settings.test",
                    "DATABASE_URL": database_url_for_current_test_db(),
                    "BROKER_URL": broker_url,
                    "METRICS_PORT": str(metrics_port),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def value(self, name: str, **labels: str) -> float | None:
        try:
            return scraped(self.metrics_url).get((name, frozenset(labels.items())))
        except OSError:
            return None  # not listening yet


@pytest.fixture
def relay_process(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    started: list[RelayProcess] = []

    def start(*, broker_url: str, metrics_port: int) -> RelayProcess:
        relay = RelayProcess(
            broker_url=broker_url,
            metrics_port=metrics_port,
            log_path=tmp_path / f"relay-{len(started)}.log",
        )
        started.append(relay)
        return relay

    yield start
    for relay in started:
        stop_process(relay.process, sig=signal.SIGKILL)


@pytest.mark.django_db(transaction=True)
def test_the_relays_metrics_show_the_backlog_grow_while_the_broker_is_away_and_drain(
    database_url: str,
    broker_url: str,
    tcp_proxy: Callable[[str, int], TcpProxy],
    relay_process: Callable[..., RelayProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "_after_commit_hooks", [])
    work_queues_declare(broker_url)
    proxy = tcp_proxy(*broker_address(broker_url))
    proxy.cut()
    relay = relay_process(
        broker_url=through_proxy(broker_url, proxy.url_host), metrics_port=free_port()
    )
    assert wait_until(lambda: relay.value("emporium_outbox_backlog") == 0, timeout=30), relay.log()

    record(3)
    assert wait_until(lambda: relay.value("emporium_outbox_backlog") == 3, timeout=20), relay.log()
    first_age = relay.value("emporium_outbox_oldest_age_seconds") or 0.0
    assert first_age > 0
    # The age grows with each sample while nothing can be published.
    assert wait_until(
        lambda: (relay.value("emporium_outbox_oldest_age_seconds") or 0.0) > first_age, timeout=20
    )
    assert (
        relay.value("emporium_outbox_events_relayed_total", outcome="broker_unavailable") or 0
    ) > 0
    assert relay.value("emporium_queue_messages", queue="emporium.dead") is None  # unreadable

    proxy.restore()
    assert wait_until(lambda: relay.value("emporium_outbox_backlog") == 0, timeout=30), relay.log()
    assert relay.value("emporium_outbox_oldest_age_seconds") == 0
    assert relay.value("emporium_outbox_events_relayed_total", outcome="published") == 3
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 0
    # With the broker back, every work queue and the dead-letter queue are measured.
    assert wait_until(
        lambda: all(
            relay.value("emporium_queue_messages", queue=queue) is not None
            for queue in ("payments", "email", "default", "emporium.dead")
        ),
        timeout=60,  # the relay's next sample after its reconnection, on loaded cores
    ), relay.log()


@pytest.mark.django_db(transaction=True)
def test_a_relay_whose_metrics_port_is_taken_stops_and_says_so(
    database_url: str, broker_url: str, relay_process: Callable[..., RelayProcess]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        relay = relay_process(broker_url=broker_url, metrics_port=port)
        relay.process.wait(timeout=60)

    assert relay.process.returncode == 1
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in relay.log()
