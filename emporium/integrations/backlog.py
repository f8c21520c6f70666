"""How far behind the background work is: the outbox's backlog and the broker's queues.

The relay daemon (``manage.py outbox_relay``) runs a :class:`BacklogSampler`
thread that measures both every :data:`SAMPLE_SECONDS` and sets the gauges its
``/metrics`` serves: the events waiting in the outbox and the age of the
oldest, and the ready messages and consumers of every work queue and of the
dead-letter queue. The queues are read with a passive ``queue.declare``
(which creates nothing) on a connection of its own, every step bounded by
:data:`BROKER_TIMEOUT_SECONDS`: a broker that is gone costs the sampler that
long, never the relay's loop. While the broker cannot be read the queue
gauges are withdrawn rather than left at their last values; a queue not
declared yet is simply absent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone
from kombu import Connection

from config.celery import DEAD_LETTER_QUEUE, TASK_QUEUES
from emporium.integrations.selectors import outbox_backlog
from emporium.observability import domain_metrics

logger = logging.getLogger(__name__)

SAMPLE_SECONDS = 5.0
BROKER_TIMEOUT_SECONDS = 2.0
# Every queue the workers consume, and the one where parked messages wait.
MEASURED_QUEUES = (*(queue.name for queue in TASK_QUEUES), DEAD_LETTER_QUEUE.name)


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    messages: int  # ready for a consumer
    consumers: int


def queue_depths(
    *, broker_url: str, queues: Sequence[str], timeout: float = BROKER_TIMEOUT_SECONDS
) -> list[QueueDepth]:
    """The depth of each of ``queues`` that exists; raises if the broker cannot be read."""
    depths = []
    with Connection(
        broker_url,
        connect_timeout=timeout,
        transport_options={"read_timeout": timeout, "write_timeout": timeout},
    ) as broker:
        # Two attempts at most, back to back (kombu's connect() waits 2 s before its retry).
        broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
        for name in queues:
            channel: Any = broker.channel()  # py-amqp's Channel; kombu types it as StdChannel
            try:
                _, messages, consumers = channel.queue_declare(queue=name, passive=True)
            except broker.channel_errors:
                continue  # not declared (yet): the broker closed this channel
            finally:
                if channel.is_open:
                    channel.close()
            depths.append(QueueDepth(queue=name, messages=messages, consumers=consumers))
    return depths


def outbox_backlog_measure() -> None:
    backlog = outbox_backlog()
    oldest = backlog.oldest_created_at
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
    domain_metrics.OUTBOX_BACKLOG.set(backlog.events)
    domain_metrics.OUTBOX_OLDEST_AGE.set(max(age, 0.0))


def queue_depths_measure(*, broker_url: str, queues: Sequence[str] = MEASURED_QUEUES) -> None:
    try:
        depths = queue_depths(broker_url=broker_url, queues=queues)
    except Exception:
        domain_metrics.QUEUE_MESSAGES.clear()
        domain_metrics.QUEUE_CONSUMERS.clear()
        raise
    for gauge in (domain_metrics.QUEUE_MESSAGES, domain_metrics.QUEUE_CONSUMERS):
        gauge.clear()  # a queue deleted since the last sample is no longer reported
    for depth in depths:
        domain_metrics.QUEUE_MESSAGES.labels(depth.queue).set(depth.messages)
        domain_metrics.QUEUE_CONSUMERS.labels(depth.queue).set(depth.consumers)


class BacklogSampler(threading.Thread):
    """Measures the outbox and the queues now, then every ``interval`` seconds, until stopped."""

    def __init__(self, *, broker_url: str | None, interval: float = SAMPLE_SECONDS) -> None:
        super().__init__(name="backlog-sampler", daemon=True)
        self.broker_url = broker_url
        self.interval = interval
        self._stopped = threading.Event()
        self._failure_logged_at: dict[str, float] = {}

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        while True:
            self.sample()
            if self._stopped.wait(self.interval):
                break
        connection.close()

    def sample(self) -> None:
        close_old_connections()
        try:
            outbox_backlog_measure()
        except DatabaseError as error:
            connection.close()  # the next sample connects afresh
            self._log_failure("outbox", error)
        if self.broker_url is None:
            return  # the embedded profile has no broker
        try:
            queue_depths_measure(broker_url=self.broker_url)
        except Exception as error:  # unreachable, refused, timed out: try again next time
            self._log_failure("broker", error)

    def _log_failure(self, what: str, error: Exception) -> None:
        # Once a minute per source: a broker that stays away must not flood the log.
        now = time.monotonic()
        if now - self._failure_logged_at.get(what, -60.0) >= 60.0:
            self._failure_logged_at[what] = now
            logger.warning("backlog sampler could not read the %s: %s", what, error)
