"""The per-process publisher thread: order kept, no waiting on Redis, bounded queue."""

from __future__ import annotations

import time

import pytest
import redis

from emporium.realtime.transport import _BackgroundPublisher
from tests.support.processes import free_port


def test_events_reach_redis_in_the_order_they_were_handed_in(redis_url: str) -> None:
    publisher = _BackgroundPublisher(batch=7)  # several pipelines for 200 events
    subscriber = redis.Redis.from_url(redis_url).pubsub()
    subscriber.subscribe("emporium-test-publisher")
    assert subscriber.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]

    for number in range(200):
        publisher.put(redis_url, "emporium-test-publisher", str(number))
    assert publisher.flush()

    received = []
    deadline = time.monotonic() + 10
    while len(received) < 200 and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=1)
        if message and message["type"] == "message":
            received.append(int(message["data"]))
    subscriber.close()

    assert received == list(range(200))


def test_handing_in_does_not_wait_for_an_unreachable_redis_and_the_queue_is_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    publisher = _BackgroundPublisher(capacity=50, batch=10)

    started = time.monotonic()
    for number in range(500):
        publisher.put(dead, "emporium-test-dead", str(number))
    elapsed = time.monotonic() - started

    assert elapsed < 0.5  # 500 hand-ins, none of them a network round trip
    assert "publish queue full" in caplog.text  # past 50 waiting, events are dropped
    assert publisher.flush(timeout=30)  # what was kept was tried, and failed, not stuck
    assert "could not publish" in caplog.text
