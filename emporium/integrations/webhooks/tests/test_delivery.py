"""Deliveries against real local HTTP receivers: signatures, retry rules, order, breaker."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from emporium.core.tests.plans import plans_of, statistics_taken_now
from emporium.integrations.webhooks import services
from emporium.integrations.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from emporium.integrations.webhooks.sender import endpoint_breaker
from emporium.integrations.webhooks.signing import SIGNATURE_HEADER
from emporium.integrations.webhooks.tests.conftest import (
    account_new,
    deliveries_for,
    event_new,
    send_all,
)
from emporium.integrations.webhooks.tests.receiver import Receiver, running_receiver
from tests.support.processes import free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_retries")]


def subscribe(receiver: Receiver, *event_types: str) -> WebhookSubscription:
    issued = services.subscription_create(
        url=receiver.url, event_types=list(event_types or ["order.paid"])
    )
    receiver.secrets.append(issued.secret)
    return issued.subscription


def test_a_delivery_is_signed_and_the_receiver_verifies_it() -> None:
    with running_receiver() as receiver:
        subscription = subscribe(receiver)
        event = event_new(payload={"order_id": 7, "total": "12.50"}, request_id="req-7f3a")
        (delivery_id,) = deliveries_for(event)

        assert send_all() == [services.Outcome.DELIVERED]

    (request,) = receiver.received
    assert request.verified_with == receiver.secrets
    assert json.loads(request.body) == {
        "id": str(event.id),
        "type": "order.paid",
        "created_at": event.created_at.isoformat(),
        "aggregate": {"type": "order", "id": "1"},
        "data": {"order_id": 7, "total": "12.50"},
    }
    assert request.headers["Emporium-Event-Id"] == str(event.id)
    assert request.headers["Emporium-Event-Type"] == "order.paid"
    assert request.headers["X-Request-ID"] == "req-7f3a"
    assert request.headers[SIGNATURE_HEADER].startswith("t=")
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 1, 200)
    assert delivery.response_body == '{"ok": true}'
    assert delivery.latency_ms is not None
    assert delivery.subscription_id == subscription.pk
    (attempt,) = WebhookAttempt.objects.filter(delivery_id=delivery_id)
    assert attempt.request_headers["Emporium-Event-Id"] == str(event.id)


def test_a_tampered_body_does_not_verify() -> None:
    with running_receiver() as receiver:
        subscribe(receiver)
        (delivery_id,) = deliveries_for(event_new())
        # The row's body changes after signing would have happened: the receiver refuses it.
        WebhookDelivery.objects.filter(pk=delivery_id).update(request_body='{"forged": true}')
        receiver.secrets[0] = receiver.secrets[0] + "x"

        send_all()

    (request,) = receiver.received
    assert request.verified_with == []
    assert WebhookDelivery.objects.get(pk=delivery_id).status == "failed"  # 401 is final


def test_during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one() -> None:
    with running_receiver() as receiver:
        subscription = subscribe(receiver)
        old_secret = receiver.secrets[0]
        rotated = services.subscription_secret_rotate(subscription=subscription, grace_seconds=3600)
        receiver.secrets.append(rotated.secret)
        deliveries_for(event_new(aggregate_id=1))
        send_all()

        (request,) = receiver.received
        assert request.verified_with == [old_secret, rotated.secret]
        assert request.headers[SIGNATURE_HEADER].count("v1=") == 2

        services.subscription_secret_rotate(subscription=subscription, grace_seconds=0)
        deliveries_for(event_new(aggregate_id=2))
        send_all()

    second = receiver.received[1]
    assert second.verified_with == []  # neither held secret is the newest one
    assert second.headers[SIGNATURE_HEADER].count("v1=") == 1


@pytest.mark.parametrize(
    ("first_answer", "retry_after"),
    [
        ((429, {"Retry-After": "1"}), 1.0),
        ((500, {}), None),
        ((503, {}), None),
        (("timeout", {}), None),
    ],
    ids=["429-retry-after", "500", "503", "timeout"],
)
def test_transient_failures_are_retried(first_answer: Any, retry_after: float | None) -> None:
    with running_receiver() as receiver:
        subscribe(receiver)
        event = event_new()
        receiver.plan[str(event.id)] = [first_answer]
        (delivery_id,) = deliveries_for(event)

        first = services.delivery_attempt(delivery_id=delivery_id)
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        assert first.outcome is services.Outcome.RETRY
        assert (delivery.status, delivery.attempts) == ("pending", 1)
        waits = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
        if retry_after is not None:
            assert waits == pytest.approx(retry_after, abs=0.05)
        else:
            assert 0.025 <= waits <= 0.06  # half to all of the first 0.05 s step

        send_all()

    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 2, 200)
    assert [r.answered for r in receiver.requests_for(str(event.id))] == [first_answer[0], 200]


def test_a_refused_connection_is_retried() -> None:
    port = free_port()  # nothing listens there
    issued = services.subscription_create(
        url=f"http://127.0.0.1:{port}/hooks", event_types=["order.paid"]
    )
    (delivery_id,) = deliveries_for(event_new())

    result = services.delivery_attempt(delivery_id=delivery_id)

    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert result.outcome is services.Outcome.RETRY
    assert delivery.status == "pending"
    assert delivery.last_error.startswith("ConnectError")
    assert issued.subscription.pk == delivery.subscription_id


@pytest.mark.parametrize("status", [400, 404, 410])
def test_other_client_errors_are_not_retried(status: int) -> None:
    with running_receiver() as receiver:
        subscribe(receiver)
        event = event_new()
        receiver.plan[str(event.id)] = [(status, {})]
        (delivery_id,) = deliveries_for(event)

        send_all()
        time.sleep(0.3)  # longer than any backoff: nothing more may come
        send_all()

    assert [r.answered for r in receiver.received] == [status]
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("failed", 1, status)


@override_settings(WEBHOOKS_MAX_ATTEMPTS=3)
def test_a_delivery_is_given_up_after_the_maximum_attempts() -> None:
    with running_receiver(answer=lambda event: (500, {})) as receiver:
        subscribe(receiver)
        (delivery_id,) = deliveries_for(event_new())
        send_all()

    assert len(receiver.received) == 3
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == "failed"
    assert delivery.last_error == "answered 500 (gave up after 3 attempts)"


# Two seconds: the Redis storage keeps the opening time in whole seconds.
@override_settings(
    WEBHOOKS_BREAKER_FAIL_MAX=3, WEBHOOKS_BREAKER_RESET_SECONDS=2, WEBHOOKS_MAX_ATTEMPTS=50
)
def test_the_breaker_opens_after_failures_and_closes_when_the_endpoint_answers() -> None:
    failing = {"on": True}
    with running_receiver(answer=lambda event: (503, {}) if failing["on"] else (200, {})) as rx:
        subscription = subscribe(rx)
        ids = [deliveries_for(event_new(aggregate_id=n))[0] for n in range(5)]

        outcomes = [services.delivery_attempt(delivery_id=pk).outcome for pk in ids]

        # Three failures open the circuit: the last two are not even sent.
        assert outcomes == [services.Outcome.RETRY] * 3 + [services.Outcome.CIRCUIT_OPEN] * 2
        assert len(rx.received) == 3
        breaker = endpoint_breaker(str(subscription.row_uuid))
        assert breaker.current_state == "open"
        held = WebhookDelivery.objects.get(pk=ids[4])
        assert (held.attempts, held.last_error) == (0, "circuit open")
        assert held.next_attempt_at > timezone.now()

        failing["on"] = False
        send_all()  # after the reset timeout a trial call goes through and closes it

    assert breaker.current_state == "closed"
    assert sorted(WebhookDelivery.objects.values_list("status", flat=True)) == ["delivered"] * 5
    assert len(rx.delivered()) == 5


@override_settings(WEBHOOKS_DISABLE_AFTER_SECONDS=1, WEBHOOKS_MAX_ATTEMPTS=50)
def test_an_endpoint_failing_for_the_configured_time_is_disabled_and_staff_told(
    django_capture_on_commit_callbacks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    staff = account_new(staff=True, email="ops@example.com")
    with running_receiver(answer=lambda event: (500, {})) as receiver:
        subscription = subscribe(receiver)
        (delivery_id,) = deliveries_for(event_new())
        services.delivery_attempt(delivery_id=delivery_id)
        subscription.refresh_from_db()
        assert subscription.is_active
        assert subscription.failing_since is not None
        assert mail.outbox == []

        time.sleep(1.1)
        with (
            caplog.at_level(logging.ERROR),
            django_capture_on_commit_callbacks(execute=True),
        ):
            send_all(timeout=2)

    subscription.refresh_from_db()
    assert not subscription.is_active
    assert subscription.disabled_reason == "every attempt failed for over 1 seconds"
    (message,) = mail.outbox
    assert message.to == [staff.email]
    assert f"subscription {subscription.pk}" in message.subject
    assert any("disabled" in record.getMessage() for record in caplog.records)
    # Its delivery waits (not lost), and goes out when the subscription is enabled again.
    assert WebhookDelivery.objects.get(pk=delivery_id).status == "pending"
    attempts_when_disabled = len(receiver.received)
    with running_receiver(secrets=receiver.secrets) as healthy:
        services.subscription_update(subscription=subscription, url=healthy.url, is_active=True)
        send_all()
    assert len(healthy.delivered()) == 1
    assert attempts_when_disabled >= 2
    assert WebhookDelivery.objects.get(pk=delivery_id).status == "delivered"


def test_deliveries_of_one_aggregate_arrive_in_order_under_retries() -> None:
    with running_receiver() as receiver:
        subscribe(receiver)
        first, second, third = (event_new(aggregate_id=1, payload={"n": n}) for n in range(3))
        other = event_new(aggregate_id=2)
        receiver.plan[str(first.id)] = [(503, {}), (500, {})]
        receiver.plan[str(second.id)] = [(429, {})]
        for event in (first, second, third, other):
            deliveries_for(event)

        send_all()

    order_one = [(r.event_id, r.answered) for r in receiver.received if r.aggregate_id == "1"]
    assert order_one == [
        (str(first.id), 503),
        (str(first.id), 500),
        (str(first.id), 200),
        (str(second.id), 429),
        (str(second.id), 200),
        (str(third.id), 200),
    ]
    # The other order did not wait for the first one's retries.
    other_at = receiver.requests_for(str(other.id))[0].at
    assert other_at < receiver.requests_for(str(first.id))[-1].at


def test_a_given_up_delivery_releases_the_next_of_its_aggregate() -> None:
    with running_receiver() as receiver:
        subscribe(receiver)
        first, second = event_new(aggregate_id=1), event_new(aggregate_id=1)
        receiver.plan[str(first.id)] = [(410, {})]
        (first_id,) = deliveries_for(first)
        # The second is created, but not offered for sending while the first is pending.
        assert deliveries_for(second) == []
        second_id = WebhookDelivery.objects.get(event_id=second.id).pk

        # The second may not go while the first is pending.
        assert services.delivery_attempt(delivery_id=second_id).outcome is services.Outcome.SKIPPED
        result = services.delivery_attempt(delivery_id=first_id)

        assert result.outcome is services.Outcome.FAILED
        assert result.follow_ups == [(second_id, 0.0)]
        assert services.delivery_attempt(delivery_id=second_id).outcome.value == "delivered"


def test_a_relayed_event_twice_makes_one_delivery() -> None:
    with running_receiver() as receiver:
        subscribe(receiver, "order.paid")
        event = event_new()
        assert len(deliveries_for(event)) == 1
        assert len(deliveries_for(event)) == 1
        assert WebhookDelivery.objects.count() == 1
        # An event type it did not ask for makes none.
        assert deliveries_for(event_new("order.shipped")) == []


def test_an_inactive_subscription_gets_nothing() -> None:
    with running_receiver() as receiver:
        subscription = subscribe(receiver)
        services.subscription_update(subscription=subscription, is_active=False)
        assert deliveries_for(event_new()) == []
    assert receiver.received == []


def test_deliveries_are_created_by_the_outbox_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    from emporium.integrations import events
    from emporium.integrations.publishers import LogPublisher
    from emporium.integrations.relay import outbox_relay_batch
    from emporium.integrations.webhooks.tasks import _deliveries_create

    # Only the webhooks' follow-up work: other apps' handlers are not under test here.
    monkeypatch.setattr(events, "_handlers", {})
    for event_type in services.WEBHOOK_EVENT_TYPES:
        events.on_event(event_type)(_deliveries_create)

    with running_receiver() as receiver:
        subscribe(receiver, "order.paid", "order.cancelled")
        paid = events.event_record(
            event_type="order.paid", aggregate_type="order", aggregate_id=5, payload={}
        )
        events.event_record(
            event_type="payment.requested", aggregate_type="payment", aggregate_id=5, payload={}
        )
        outbox_relay_batch(publisher=LogPublisher())

    (delivery,) = WebhookDelivery.objects.all()
    assert (delivery.event_id, delivery.status) == (paid.id, DeliveryStatus.PENDING)


def test_one_task_run_sends_an_aggregates_deliveries_back_to_back() -> None:
    from emporium.integrations.webhooks.tasks import webhook_deliver

    with running_receiver() as receiver:
        subscribe(receiver)
        events_of_order = [event_new(aggregate_id=1, payload={"n": n}) for n in range(3)]
        (first_id,) = deliveries_for(events_of_order[0])
        for event in events_of_order[1:]:
            assert deliveries_for(event) == []  # started by the one before

        assert webhook_deliver.apply(args=(first_id,)).get() == "delivered"

    assert [r.event_id for r in receiver.delivered()] == [str(e.id) for e in events_of_order]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


def test_due_deliveries_are_read_by_index_probes_whatever_the_statistics_say() -> None:
    # An endpoint down for an hour of busy trading leaves a backlog the
    # table's statistics know nothing of. As an anti-join, "no earlier pending
    # delivery of the aggregate" then read the whole pending-row index for
    # every candidate (hundreds of millions of rows compared for 200,000
    # pending); each candidate must cost one probe of that index.
    if connection.vendor != "postgresql":
        pytest.skip("planner statistics are PostgreSQL's")
    statistics_taken_now(WebhookDelivery)
    subscription = services.subscription_create(
        url="https://hooks.example/in", event_types=["order.paid"]
    ).subscription
    start = timezone.now() - timezone.timedelta(hours=1)
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            subscription=subscription,
            event_id=uuid.uuid4(),
            event_type="order.paid",
            aggregate_type="order",
            aggregate_id=str(n % 750),  # four deliveries per order
            request_body="{}",
            next_attempt_at=start + timezone.timedelta(milliseconds=n),
        )
        for n in range(3000)
    )
    pending = list(WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True))
    with plans_of('FROM "webhooks_webhookdelivery"') as plans:
        due = services.deliveries_due(limit=50)
        claimed = services.delivery_claim(delivery_id=pending[750], now=timezone.now())
    assert due == pending[:50]  # the first of each aggregate, oldest due first
    assert claimed is False  # the second of order 0, behind pending[0]
    assert len(plans) == 2
    for plan in plans:
        assert "Seq Scan on webhooks_webhookdelivery" not in plan, plan
        assert "Join Filter" not in plan, plan
        assert "Index Cond: ((subscription_id = " in plan, plan
    assert "Index Scan using webhook_delivery_due_idx" in plans[0], plans[0]
