"""Background payment work. Both tasks are safe to run any number of times."""

from __future__ import annotations

import logging
import math
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from emporium.integrations import events
from emporium.integrations.models import OutboxEvent
from emporium.payments import services
from emporium.payments.gateway import (
    PaymentDeclined,
    ProviderRejected,
    ProviderUnavailable,
    default_gateway,
)
from emporium.payments.models import Payment, PaymentStatus

logger = logging.getLogger(__name__)


# Every task that talks to the provider: acknowledged only when done and
# re-queued if its worker dies (so each must be safe to run twice), retried
# by its own bounded logic, and stopped if the provider hangs it.
_PROVIDER_TASK: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": None,
    "time_limit": 60,
    "soft_time_limit": 50,
    "ignore_result": True,
}


def _retry_countdown(attempt: int) -> int:
    """The jittered backoff in whole seconds, at least one.

    On quorum queues Celery delays a retry through RabbitMQ (native delayed
    delivery), which counts whole seconds and refuses a countdown under one
    second with ValueError; the retry would then be rejected and the payment
    left pending.
    """
    return max(1, math.ceil(services.retry_delay(attempt)))


@shared_task(name="payments.process", **_PROVIDER_TASK)
def payment_process(self: Task[[int], str], payment_id: int) -> str:
    """Charges a pending payment and settles it.

    Run twice (a retry, a redelivery after the worker died, a duplicate
    event) it charges once: the provider de-duplicates on a key derived from
    the payment id and answers a repeat with the first charge, and settling is
    a conditional UPDATE that only the first run applies.
    """
    payment = Payment.objects.filter(pk=payment_id).first()
    if payment is None or payment.status != PaymentStatus.PENDING:
        return "settled"
    try:
        result = default_gateway().charge(
            idempotency_key=services.provider_idempotency_key(payment.pk),
            amount=payment.amount,
            currency=settings.PAYMENT_CURRENCY,
            token=payment.provider_token,
            reference=f"payment-{payment.pk}",
        )
    except PaymentDeclined as declined:
        services.payment_mark_failed(
            payment_id=payment.pk, reason=f"declined: {declined.code}", outcome="declined"
        )
        return "declined"
    except ProviderRejected as rejected:
        services.payment_mark_failed(
            payment_id=payment.pk, reason=f"rejected: {rejected}", outcome="rejected"
        )
        return "rejected"
    except ProviderUnavailable as unavailable:
        attempt = self.request.retries
        if attempt + 1 >= settings.PAYMENT_MAX_ATTEMPTS:
            services.payment_mark_failed(
                payment_id=payment.pk,
                reason=f"provider unavailable after {attempt + 1} attempts",
                outcome_unknown=True,
            )
            return "gave_up"
        delay = _retry_countdown(attempt)
        logger.info("payment %s: %s; retry %s in %ss", payment.pk, unavailable, attempt + 1, delay)
        raise self.retry(countdown=delay, exc=unavailable) from unavailable
    services.payment_mark_succeeded(payment_id=payment.pk, provider_reference=result.reference)
    return "succeeded"


@shared_task(name="payments.refund", **_PROVIDER_TASK)
def payment_refund(self: Task[[int], str], payment_id: int) -> str:
    """Refunds a succeeded payment; the refund key is derived from the payment id,
    so a second run gets the first refund back instead of refunding twice."""
    payment = Payment.objects.filter(pk=payment_id).first()
    if payment is None or payment.status != PaymentStatus.SUCCEEDED:
        return "nothing_to_refund"
    try:
        refund_reference = default_gateway().refund(
            idempotency_key=f"emporium-refund-{payment.pk}",
            charge_reference=payment.provider_reference,
            amount=payment.amount,
        )
    except ProviderUnavailable as unavailable:
        raise self.retry(
            countdown=_retry_countdown(self.request.retries), exc=unavailable
        ) from unavailable
    except ProviderRejected as rejected:
        # Retrying the same request cannot help; the payment stays "succeeded"
        # so it shows up for a person to refund by hand.
        logger.error("payment %s: the provider refused the refund: %s", payment.pk, rejected)
        return "refused"
    services.payment_mark_refunded(payment_id=payment.pk, refund_reference=refund_reference)
    return "refunded"


@shared_task(name="payments.reconcile", **_PROVIDER_TASK)
def payment_reconcile(self: Task[[int], str], payment_id: int) -> str:
    """Asks the provider what became of a payment we gave up on, and refunds a late charge.

    Asking never charges (it is a lookup by the payment's idempotency key), and
    the late-success step is a conditional UPDATE, so running this twice refunds once.
    """
    payment = Payment.objects.filter(pk=payment_id).first()
    if payment is None or payment.status != PaymentStatus.FAILED:
        return "settled"
    try:
        outcome = default_gateway().charge_outcome(
            idempotency_key=services.provider_idempotency_key(payment.pk)
        )
    except PaymentDeclined:
        return "declined"
    except ProviderUnavailable as unavailable:
        if self.request.retries + 1 >= settings.PAYMENT_RECONCILE_MAX_ATTEMPTS:
            logger.error("payment %s: could not reconcile with the provider", payment.pk)
            return "unreachable"
        raise self.retry(
            countdown=_retry_countdown(self.request.retries), exc=unavailable
        ) from unavailable
    if outcome is None:
        return "never_charged"
    services.payment_late_success(payment_id=payment.pk, provider_reference=outcome.reference)
    return "refunding"


@shared_task(name="payments.recover_stuck", ignore_result=True)
def payments_recover_stuck() -> int:
    """Re-queues pending payments left without a task; payment_process is safe to repeat."""
    stuck = services.payments_stuck_pending(older_than_seconds=settings.PAYMENT_STUCK_AFTER_SECONDS)
    for payment_id in stuck:
        payment_process.apply_async(args=(payment_id,))
    return len(stuck)


@events.on_event(events.PAYMENT_RECONCILE_REQUESTED)
def _queue_reconcile(event: OutboxEvent) -> None:
    payment_reconcile.apply_async(
        args=(event.payload["payment_id"],), countdown=settings.PAYMENT_RECONCILE_DELAY_SECONDS
    )


@events.on_event(events.PAYMENT_REQUESTED)
def _queue_payment(event: OutboxEvent) -> None:
    payment_process.apply_async(args=(event.payload["payment_id"],))


@events.on_event(events.ORDER_CANCELLED)
def _refund_cancelled_order(event: OutboxEvent) -> None:
    """A paid order was cancelled: its succeeded payments are to be refunded.

    Runs in the relay's transaction, so the refund requests are recorded
    exactly when the event is marked published; they reach the refund task
    through the outbox like every other refund.
    """
    services.payment_refund_for_cancelled_order(
        order_id=int(event.payload["order_id"]), from_status=str(event.payload.get("from", ""))
    )


@events.on_event(events.PAYMENT_REFUND_REQUESTED)
def _queue_refund(event: OutboxEvent) -> None:
    payment_refund.apply_async(args=(event.payload["payment_id"],))
