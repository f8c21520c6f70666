"""On the real servers: a Celery worker on RabbitMQ sends, and senders race on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction

from emporium.integrations import events
from emporium.integrations.publishers import LogPublisher
from emporium.integrations.relay import outbox_relay_pending
from emporium.integrations.webhooks import services
from emporium.integrations.webhooks.models import WebhookDelivery
from emporium.integrations.webhooks.tasks import _deliveries_create
from emporium.integrations.webhooks.tests.conftest import deliveries_for, event_new, send_all
from emporium.integrations.webhooks.tests.receiver import running_receiver
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_retries")]


@pytest.fixture
def only_webhook_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay starts only the webhooks' follow-up work (other apps' is not under test)."""
    monkeypatch.setattr(events, "_handlers", {})
    monkeypatch.setattr(events, "_after_commit_hooks", [])
    for event_type in services.WEBHOOK_EVENT_TYPES:
        events.on_event(event_type)(_deliveries_create)


@pytest.mark.usefixtures("only_webhook_handlers")
def test_a_worker_delivers_a_relayed_event_and_retries_it_through_the_broker(
    database_url: str, broker_url: str, redis_url: str, start_worker: Any
) -> None:
    with running_receiver() as receiver:
        issued = services.subscription_create(url=receiver.url, event_types=["order.shipped"])
        receiver.secrets.append(issued.secret)
        with transaction.atomic():
            event = events.event_record(
                event_type="order.shipped", aggregate_type="order", aggregate_id=9, payload={}
            )
        # A 429 first: the retry waits the Retry-After second in RabbitMQ, then succeeds.
        receiver.plan[str(event.id)] = [(429, {"Retry-After": "1"})]
        start_worker(queues="default")

        assert outbox_relay_pending(publisher=LogPublisher()) == 1

        assert wait_until(lambda: len(receiver.delivered()) == 1, timeout=30)
        assert wait_until(
            lambda: WebhookDelivery.objects.get(event_id=event.id).status == "delivered",
            timeout=10,
        )

    answers = [r.answered for r in receiver.requests_for(str(event.id))]
    assert answers == [429, 200]
    assert all(r.verified_with == [issued.secret] for r in receiver.received)
    delivery = WebhookDelivery.objects.get(event_id=event.id)
    assert delivery.attempts == 2
    gap = (delivery.last_attempt_at - delivery.created_at).total_seconds()
    assert gap >= 1.0  # not before Retry-After


def test_racing_senders_send_each_delivery_once_and_keep_each_orders_sequence(
    database_url: str,
) -> None:
    with running_receiver() as receiver:
        issued = services.subscription_create(url=receiver.url, event_types=["order.paid"])
        receiver.secrets.append(issued.secret)
        created = []
        for order in range(6):
            for step in range(4):
                event = event_new(aggregate_id=order, payload={"step": step})
                if step == 0:
                    receiver.plan[str(event.id)] = [(503, {})]
                created.append(event)
                deliveries_for(event)

        outcomes = send_all(parallel=6, timeout=30)

    assert WebhookDelivery.objects.filter(status="delivered").count() == 24
    delivered = receiver.delivered()
    # Each event delivered exactly once although every delivery was offered to two senders.
    assert sorted(r.event_id for r in delivered) == sorted(str(e.id) for e in created)
    assert services.Outcome.SKIPPED in outcomes
    for order in range(6):
        steps = [
            json.loads(r.body)["data"]["step"] for r in delivered if r.aggregate_id == str(order)
        ]
        assert steps == [0, 1, 2, 3]
