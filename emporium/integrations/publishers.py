"""Adapters that put an outbox event on the wire.

Production publishes to a RabbitMQ topic exchange with publisher confirms;
the embedded profile, which has no broker, only logs. Both behave the same
for the relay: return normally once the event is safely handed over, or raise.
"""

from __future__ import annotations

import logging
from typing import Protocol

from django.conf import settings
from kombu import Connection, Exchange, Producer

from emporium.integrations.models import OutboxEvent

logger = logging.getLogger(__name__)

EVENTS_EXCHANGE = "emporium.events"


class EventPublisher(Protocol):
    def publish(self, event: OutboxEvent) -> None: ...

    def close(self) -> None: ...


def event_message(event: OutboxEvent) -> dict[str, object]:
    return {
        "id": str(event.id),
        "type": event.event_type,
        "aggregate": {"type": event.aggregate_type, "id": event.aggregate_id},
        "occurred_at": event.created_at.isoformat(),
        "data": event.payload,
    }


class BrokerPublisher:
    """Publishes persistent messages and waits for the broker's confirm of each."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.connection = Connection(
            url, connect_timeout=timeout, transport_options={"confirm_publish": True}
        )
        self.exchange = Exchange(EVENTS_EXCHANGE, type="topic", durable=True)
        self.timeout = timeout
        self._producer: Producer | None = None

    def _producer_or_connect(self) -> Producer:
        if self._producer is None:
            self.connection.ensure_connection(max_retries=1, timeout=int(self.timeout))
            self._producer = self.connection.Producer()
            self.exchange(self.connection.default_channel).declare()
        return self._producer

    def publish(self, event: OutboxEvent) -> None:
        producer = self._producer_or_connect()
        try:
            producer.publish(
                event_message(event),
                exchange=self.exchange,
                routing_key=event.event_type,
                serializer="json",
                delivery_mode=2,
                message_id=str(event.id),
                # The request id and trace context of the work that recorded it.
                headers=event.correlation,
                # No content_type here: kombu only serialises the body when it picks
                # the content type itself (the json serializer sets application/json).
                retry=False,
                timeout=self.timeout,
            )
        except Exception:
            # The connection may be dead (broker restarted, network cut). Drop it so
            # the next publish connects afresh: the relay daemon keeps this publisher.
            self.close()
            raise

    def close(self) -> None:
        self._producer = None
        self.connection.release()


class LogPublisher:
    """The embedded profile's stand-in: there is no broker to hand events to."""

    def publish(self, event: OutboxEvent) -> None:
        logger.info("event %s %s", event.event_type, event.id)

    def close(self) -> None:
        return None


def default_publisher() -> EventPublisher:
    url = settings.EMPORIUM_EVENTS_BROKER_URL
    return BrokerPublisher(url) if url else LogPublisher()
