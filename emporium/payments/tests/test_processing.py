"""The payment task against the real simulated provider: settle once, retry only what may pass.

The task runs in-process with ``apply()`` (Celery runs a retry at once there,
without its countdown); the provider is the simulator process, whose ledger
says how many requests and charges really reached it.
"""

from __future__ import annotations

import math
import random
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from celery import current_app
from celery.exceptions import Retry

from emporium.core.tests.factories import OrderFactory, PaymentFactory, UserFactory, client_for
from emporium.integrations.models import OutboxEvent
from emporium.integrations.relay import outbox_relay_pending
from emporium.orders.models import Order, OrderStatus, OrderStatusChange
from emporium.payments import services, tasks
from emporium.payments.gateway import default_gateway, provider_breaker
from emporium.payments.models import Payment, PaymentStatus
from emporium.payments.tasks import payment_process
from tests.support.processes import ProviderProcess, wait_until

pytestmark = pytest.mark.django_db


GOOD_CARD = "tok_visa"


def make_payment(*, token: str = GOOD_CARD, amount: str = "59.90") -> Payment:
    order = OrderFactory(total_amount=Decimal(amount))
    return PaymentFactory(order=order, amount=Decimal(amount), provider_token=token)


def reference(payment: Payment) -> str:
    return f"payment-{payment.pk}"


def status_changes(order_id: int) -> list[tuple[str, str, str]]:
    return list(
        OrderStatusChange.objects.filter(order_id=order_id)
        .order_by("id")
        .values_list("from_status", "to_status", "reason")
    )


def events_of(event_type: str) -> list[dict[str, Any]]:
    return [
        event.payload
        for event in OutboxEvent.objects.filter(event_type=event_type).order_by("created_at", "id")
    ]


@pytest.fixture
def provider(payment_provider: ProviderProcess, settings: Any) -> Iterator[ProviderProcess]:
    """The simulator, with a breaker that stays out of the way of retry counting."""
    settings.PAYMENT_MAX_ATTEMPTS = 4
    settings.PAYMENT_BREAKER_FAIL_MAX = 50
    provider_breaker.cache_clear()
    yield payment_provider
    provider_breaker().close()
    provider_breaker.cache_clear()


def test_success_settles_payment_and_order_once(provider: ProviderProcess) -> None:
    payment = make_payment(amount="59.90")

    outcome = payment_process.apply(args=(payment.pk,))

    assert outcome.get() == "succeeded"
    [charge] = provider.charges_for(reference(payment))
    assert charge["amount"] == "59.90"
    assert charge["currency"] == "EUR"
    assert charge["status"] == "succeeded"
    assert provider.ledger()["requests_seen"] == 1
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.provider_reference == charge["id"]
    assert payment.failure_reason == ""
    assert Order.objects.get(pk=payment.order_id).order_status == OrderStatus.PAID
    assert status_changes(payment.order_id) == [("pending_payment", "paid", "payment succeeded")]
    assert [event["order_id"] for event in events_of("order.paid")] == [payment.order_id]
    assert events_of("payment.failed") == []


def test_a_settled_payment_is_not_charged_again(provider: ProviderProcess) -> None:
    payment = make_payment()
    payment_process.apply(args=(payment.pk,))

    again = payment_process.apply(args=(payment.pk,))

    assert again.get() == "settled"
    assert provider.ledger()["requests_seen"] == 1
    assert len(provider.charges_for(reference(payment))) == 1
    assert status_changes(payment.order_id) == [("pending_payment", "paid", "payment succeeded")]
    assert len(events_of("order.paid")) == 1


def test_a_rerun_after_a_crash_that_followed_the_charge_charges_once(
    provider: ProviderProcess,
) -> None:
    """The first run charged and died before settling; the redelivered task charges again."""
    payment = make_payment()
    first = default_gateway().charge(
        idempotency_key=services.provider_idempotency_key(payment.pk),
        amount=payment.amount,
        currency="EUR",
        token=payment.provider_token,
        reference=reference(payment),
    )
    assert Payment.objects.get(pk=payment.pk).status == PaymentStatus.PENDING

    outcome = payment_process.apply(args=(payment.pk,))

    assert outcome.get() == "succeeded"
    assert provider.ledger()["requests_seen"] == 2
    assert [charge["id"] for charge in provider.charges_for(reference(payment))] == [
        first.reference
    ]
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.provider_reference == first.reference
    assert status_changes(payment.order_id) == [("pending_payment", "paid", "payment succeeded")]


def test_provider_idempotency_key_depends_on_the_payment_id_only() -> None:
    assert services.provider_idempotency_key(42) == services.provider_idempotency_key(42)
    assert services.provider_idempotency_key(42) != services.provider_idempotency_key(43)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("tok_declined", "declined: declined"),
        ("tok_insufficient_funds", "declined: insufficient_funds"),
        ("tok_stolen_card", "declined: stolen_card"),
    ],
)
def test_decline_fails_payment_and_order_without_retrying(
    provider: ProviderProcess, token: str, reason: str
) -> None:
    payment = make_payment(token=token)

    outcome = payment_process.apply(args=(payment.pk,))

    assert outcome.get() == "declined"
    assert provider.ledger()["requests_seen"] == 1  # a decline is final: asked once
    assert provider.charges_for(reference(payment)) == []
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_reason == reason
    assert payment.provider_reference == ""
    assert Order.objects.get(pk=payment.order_id).order_status == OrderStatus.PAYMENT_FAILED
    assert status_changes(payment.order_id) == [("pending_payment", "payment_failed", reason)]
    assert events_of("payment.failed") == [
        {"payment_id": payment.pk, "order_id": payment.order_id, "reason": reason}
    ]
    assert events_of("order.paid") == []


def test_decline_does_not_count_against_the_breaker(
    provider: ProviderProcess, settings: Any
) -> None:
    settings.PAYMENT_BREAKER_FAIL_MAX = 2
    provider_breaker.cache_clear()
    declined = [make_payment(token="tok_declined") for _ in range(3)]

    outcomes = [payment_process.apply(args=(payment.pk,)).get() for payment in declined]
    healthy = make_payment()
    last = payment_process.apply(args=(healthy.pk,)).get()

    assert outcomes == ["declined"] * 3
    assert last == "succeeded"
    assert provider_breaker().current_state == "closed"
    assert provider.ledger()["requests_seen"] == 4


def run_attempts(payment: Payment, attempts: int) -> tuple[list[float], Any]:
    """Runs the task as a worker would: each Retry is one more delivery of it.

    Returns the countdowns the task asked for and the last run's outcome.
    """
    countdowns: list[float] = []
    for attempt in range(attempts):
        try:
            outcome = payment_process.apply(args=(payment.pk,), retries=attempt)
        except Retry as retry:
            countdowns.append(float(retry.when or 0))
            continue
        return countdowns, outcome.get()
    return countdowns, None


@pytest.mark.parametrize(
    "trouble", [{"failure_rate": 1.0}, {"outage": True}], ids=["503s", "outage"]
)
def test_transient_errors_are_retried_with_backoff_up_to_the_bound_then_fail(
    provider: ProviderProcess, settings: Any, trouble: dict[str, Any]
) -> None:
    settings.PAYMENT_RETRY_BASE_SECONDS = 2.0
    settings.PAYMENT_RETRY_CAP_SECONDS = 5.0
    provider.control(**trouble)
    payment = make_payment()

    countdowns, outcome = run_attempts(payment, attempts=10)

    assert outcome == "gave_up"
    assert len(countdowns) == 3  # PAYMENT_MAX_ATTEMPTS = 4: three retries, then no more
    for attempt, countdown in enumerate(countdowns):
        assert 1 <= countdown <= math.ceil(min(5.0, 2.0 * 2**attempt))
    assert provider.ledger()["requests_seen"] == 4
    assert provider.charges_for(reference(payment)) == []
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_reason == "provider unavailable after 4 attempts"
    assert Order.objects.get(pk=payment.order_id).order_status == OrderStatus.PAYMENT_FAILED
    assert status_changes(payment.order_id) == [
        ("pending_payment", "payment_failed", "provider unavailable after 4 attempts")
    ]
    assert len(events_of("payment.failed")) == 1


def test_a_retry_after_the_provider_recovered_succeeds(provider: ProviderProcess) -> None:
    provider.control(failure_rate=1.0)
    payment = make_payment()
    with pytest.raises(Retry):
        payment_process.apply(args=(payment.pk,))
    assert Payment.objects.get(pk=payment.pk).status == PaymentStatus.PENDING

    provider.control(failure_rate=0.0)
    outcome = payment_process.apply(args=(payment.pk,), retries=1)

    assert outcome.get() == "succeeded"
    assert provider.ledger()["requests_seen"] == 2
    assert len(provider.charges_for(reference(payment))) == 1
    assert Order.objects.get(pk=payment.order_id).order_status == OrderStatus.PAID


def test_provider_slower_than_the_timeout_is_a_transient_error(
    provider: ProviderProcess, settings: Any
) -> None:
    settings.PAYMENT_MAX_ATTEMPTS = 2
    settings.PAYMENT_PROVIDER_TIMEOUT_SECONDS = 0.2
    # The outage flag makes the slow answers 503s, so nothing is charged behind our back.
    provider.control(latency_ms=600, outage=True)
    payment = make_payment()

    countdowns, outcome = run_attempts(payment, attempts=2)

    assert outcome == "gave_up"
    assert len(countdowns) == 1
    assert provider.ledger()["requests_seen"] == 2
    assert Payment.objects.get(pk=payment.pk).failure_reason == (
        "provider unavailable after 2 attempts"
    )


def test_the_bound_counts_attempts_not_retries(provider: ProviderProcess, settings: Any) -> None:
    settings.PAYMENT_MAX_ATTEMPTS = 1
    provider.control(failure_rate=1.0)
    payment = make_payment()

    assert payment_process.apply(args=(payment.pk,)).get() == "gave_up"
    assert provider.ledger()["requests_seen"] == 1


def provider_decided(provider: ProviderProcess, key: str) -> bool:
    """Whether the simulator has finished the request sent with ``key`` (read directly)."""
    try:
        with urllib.request.urlopen(f"{provider.url}/v1/requests/{key}", timeout=5) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except OSError:
        return False


def test_a_charge_completed_after_the_last_timeout_is_found_and_refunded(
    provider: ProviderProcess, settings: Any
) -> None:
    settings.PAYMENT_MAX_ATTEMPTS = 1
    settings.PAYMENT_PROVIDER_TIMEOUT_SECONDS = 0.2
    provider.control(latency_ms=500)  # slower than we wait, but it does charge
    payment = make_payment()

    assert payment_process.apply(args=(payment.pk,)).get() == "gave_up"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert [event["payment_id"] for event in events_of("payment.reconcile_requested")] == [
        payment.pk
    ]
    key = services.provider_idempotency_key(payment.pk)
    assert wait_until(lambda: provider_decided(provider, key), timeout=5)
    charge = provider.charges_for(reference(payment))[0]
    settings.PAYMENT_PROVIDER_TIMEOUT_SECONDS = 5.0  # the lookup itself must not time out

    assert tasks.payment_reconcile.apply(args=(payment.pk,)).get() == "refunding"
    assert tasks.payment_reconcile.apply(args=(payment.pk,)).get() == "settled"  # once only
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.provider_reference == charge["id"]
    assert [event["payment_id"] for event in events_of("payment.refund_requested")] == [payment.pk]

    assert tasks.payment_refund.apply(args=(payment.pk,)).get() == "refunded"
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED
    assert [refund["charge_id"] for refund in provider.ledger()["refunds"]] == [charge["id"]]
    assert len(provider.charges_for(reference(payment))) == 1  # asking never charged again
    assert Order.objects.get(pk=payment.order_id).order_status == OrderStatus.PAYMENT_FAILED


def test_reconciling_a_payment_the_provider_never_charged_changes_nothing(
    provider: ProviderProcess, settings: Any
) -> None:
    settings.PAYMENT_MAX_ATTEMPTS = 1
    provider.control(outage=True)
    payment = make_payment()
    assert payment_process.apply(args=(payment.pk,)).get() == "gave_up"
    provider.control(outage=False)
    provider_breaker().close()

    assert tasks.payment_reconcile.apply(args=(payment.pk,)).get() == "never_charged"

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert provider.ledger()["charges"] == []
    assert events_of("payment.refund_requested") == []


def test_a_late_success_callback_refunds_a_payment_given_up(provider: ProviderProcess) -> None:
    payment = make_payment()
    services.payment_mark_failed(payment_id=payment.pk, reason="provider unavailable")

    assert services.payment_mark_succeeded(payment_id=payment.pk, provider_reference="ch_late")

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.provider_reference == "ch_late"
    assert [event["payment_id"] for event in events_of("payment.refund_requested")] == [payment.pk]
    assert Order.objects.get(pk=payment.order_id).order_status == OrderStatus.PAYMENT_FAILED
    # a duplicate of that callback does nothing more
    assert not services.payment_mark_succeeded(payment_id=payment.pk, provider_reference="ch_late")
    assert len(events_of("payment.refund_requested")) == 1


def test_a_missing_payment_is_nothing_to_do(provider: ProviderProcess) -> None:
    assert payment_process.apply(args=(123456789,)).get() == "settled"
    assert provider.ledger()["requests_seen"] == 0


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 4, 5, 8])
def test_retry_delay_is_full_jitter_below_the_capped_exponential(
    settings: Any, attempt: int
) -> None:
    settings.PAYMENT_RETRY_BASE_SECONDS = 2.0
    settings.PAYMENT_RETRY_CAP_SECONDS = 40.0
    ceiling = min(40.0, 2.0 * 2**attempt)
    random.seed(20240611 + attempt)

    delays = [services.retry_delay(attempt) for _ in range(4000)]

    assert all(0 <= delay <= ceiling for delay in delays)
    # Full jitter: the whole range is used, not just its upper half.
    assert min(delays) < 0.02 * ceiling
    assert max(delays) > 0.98 * ceiling
    assert 0.45 * ceiling < sum(delays) / len(delays) < 0.55 * ceiling


def test_retry_countdown_is_whole_seconds_of_at_least_one(settings: Any) -> None:
    """RabbitMQ's delayed delivery counts seconds; Celery rejects countdowns under 1 s."""
    settings.PAYMENT_RETRY_BASE_SECONDS = 0.5
    settings.PAYMENT_RETRY_CAP_SECONDS = 120.0
    random.seed(7)

    first = {tasks._retry_countdown(0) for _ in range(500)}
    fourth = {tasks._retry_countdown(3) for _ in range(500)}

    assert first == {1}  # the ceiling is 0.5 s: never 0, never a fraction
    assert fourth == {1, 2, 3, 4}


@pytest.fixture
def tasks_in_process() -> Iterator[None]:
    """Celery runs queued tasks in-process, even where BROKER_URL names a real broker."""
    before = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = before


@pytest.mark.usefixtures("tasks_in_process")
def test_started_payment_is_charged_after_commit_through_the_outbox(
    provider: ProviderProcess, django_capture_on_commit_callbacks: Any
) -> None:
    """API -> outbox -> relay -> task -> provider."""
    customer = UserFactory()
    order = OrderFactory(user=customer, total_amount=Decimal("24.00"))

    with django_capture_on_commit_callbacks(execute=False):
        response = client_for(customer).post(
            f"/api/orders/{order.pk}/payments/",
            {"payment_method": "card", "token": "tok_visa"},
            format="json",
        )
    assert response.status_code == 201
    assert provider.ledger()["requests_seen"] == 0  # nothing before the relay runs

    relayed = outbox_relay_pending()

    assert relayed >= 1
    payment = Payment.objects.get(pk=response.json()["id"])
    assert payment.status == PaymentStatus.SUCCEEDED
    assert [charge["amount"] for charge in provider.charges_for(reference(payment))] == ["24.00"]
    assert Order.objects.get(pk=order.pk).order_status == OrderStatus.PAID
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 0


def test_reconciling_a_declined_payment_finds_the_decline_and_refunds_nothing(
    provider: ProviderProcess,
) -> None:
    payment = make_payment(token="tok_declined")
    assert payment_process.apply(args=(payment.pk,)).get() == "declined"

    assert tasks.payment_reconcile.apply(args=(payment.pk,)).get() == "declined"

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert events_of("payment.refund_requested") == []
