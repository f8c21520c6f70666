"""Helpers shared by the outbox tests: a queue on the real events exchange, publishers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kombu import Connection, Exchange, Queue
from kombu.message import Message

from config.celery import DEAD_LETTER_QUEUE, TASK_QUEUES
from emporium.integrations.models import OutboxEvent
from emporium.integrations.publishers import EVENTS_EXCHANGE, EventPublisher


@dataclass
class EventQueue:
    """A private queue bound to ``emporium.events``; ``drain()`` takes what has arrived."""

    connection: Connection
    queue: Queue

    def drain(self) -> list[Message]:
        messages = []
        # A publisher confirm means the message is already routed to this queue,
        # so a basic.get right after the relay pass sees everything it sent.
        while (message := self.queue.get(no_ack=True)) is not None:
            messages.append(message)
        return messages


@contextmanager
def event_queue(broker_url: str, *, routing_key: str) -> Iterator[EventQueue]:
    exchange = Exchange(EVENTS_EXCHANGE, type="topic", durable=True)
    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.default_channel
        exchange(channel).declare()
        queue = Queue(
            f"emporium.test.events.{uuid.uuid4()}",
            exchange,
            routing_key=routing_key,
            exclusive=True,
            auto_delete=True,
            durable=False,
        )(channel)
        queue.declare()
        try:
            yield EventQueue(connection=connection, queue=queue)
        finally:
            queue.delete()


def work_queues_declare(broker_url: str) -> None:
    """Declares every work queue and the dead-letter queue, as a starting worker does.

    A broker that has never seen a worker has none of them; what measures them
    reports only the queues that exist.
    """
    with Connection(broker_url, connect_timeout=5) as connection:
        for queue in (*TASK_QUEUES, DEAD_LETTER_QUEUE):
            queue(connection.default_channel).declare()


def through_proxy(broker_url: str, proxy_host: str) -> str:
    """``broker_url`` with its host and port replaced by the proxy's, credentials and vhost kept."""
    parts = urlsplit(broker_url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{proxy_host}" if credentials else proxy_host
    return urlunsplit(parts._replace(netloc=netloc))


def broker_address(broker_url: str) -> tuple[str, int]:
    parts = urlsplit(broker_url)
    return parts.hostname or "127.0.0.1", parts.port or 5672


@dataclass
class RecordingPublisher:
    """Keeps the id of every event handed to it; fails on the n-th publish if asked to."""

    fail_on_call: int | None = None
    published: list[uuid.UUID] = field(default_factory=list)
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, event: OutboxEvent) -> None:
        with self._lock:
            self.calls += 1
            if self.calls == self.fail_on_call:
                raise ConnectionRefusedError("broker unreachable")
            self.published.append(event.id)

    def close(self) -> None:
        return None


@dataclass
class ConfirmedPublisher:
    """Wraps a real publisher and notes each event whose publish returned (was confirmed)."""

    inner: EventPublisher
    confirmed: list[uuid.UUID] = field(default_factory=list)

    def publish(self, event: OutboxEvent) -> None:
        self.inner.publish(event)
        self.confirmed.append(event.id)

    def close(self) -> None:
        self.inner.close()


def message_ids(messages: list[Message]) -> list[str]:
    return [message.properties["message_id"] for message in messages]


def payloads(messages: list[Message]) -> list[dict[str, Any]]:
    return [message.payload for message in messages]
