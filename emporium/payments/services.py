"""Payment lifecycle: start, settle exactly once, refund.

A payment leaves ``pending`` only through a conditional UPDATE
(``… WHERE status = 'pending'``), so the task, its re-runs after a crash and
the provider's webhook can all report the same outcome and exactly one of
them applies it (and moves the order).
"""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from emporium.accounts.models import User
from emporium.core.errors import Conflict, InvalidInput
from emporium.integrations import events
from emporium.observability import domain_metrics
from emporium.orders.locks import order_lock
from emporium.orders.models import Order, OrderStatus
from emporium.orders.services import IllegalTransition, order_transition
from emporium.payments.models import DiscrepancyKind, Payment, PaymentDiscrepancy, PaymentStatus

logger = logging.getLogger(__name__)


class PaymentNotAllowed(Conflict):
    code = "payment_not_allowed"


class PaymentMethodUnknown(InvalidInput):
    code = "payment_method_unknown"


def provider_idempotency_key(payment_id: int) -> str:
    """Derived from the payment id alone: every attempt at one payment is the same charge."""
    return f"emporium-payment-{payment_id}"


def payment_start(*, order: Order, user: User, payment_method: str, token: str) -> Payment:
    if payment_method not in settings.PAYMENT_METHODS:
        raise PaymentMethodUnknown(
            f"Payment method {payment_method!r} is not offered.",
            details={"payment_method": [f"Choose one of {', '.join(settings.PAYMENT_METHODS)}."]},
        )
    try:
        with transaction.atomic():
            locked = order_lock(order_id=order.pk, user_id=user.pk)
            if locked.order_status != OrderStatus.PENDING_PAYMENT:
                raise PaymentNotAllowed(
                    f"An order that is {locked.order_status} cannot be paid.",
                    details={"order_status": locked.order_status},
                )
            payment = Payment.objects.create(
                order=locked,
                payment_method=payment_method,
                amount=locked.total_amount,
                status=PaymentStatus.PENDING,
                provider_token=token,
            )
            _payment_event(events.PAYMENT_REQUESTED, payment, amount=str(payment.amount))
    except IntegrityError:
        raise PaymentNotAllowed(
            "This order already has a payment in progress or completed.",
            details={"order": order.pk},
        ) from None
    return payment


def retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""
    ceiling = min(
        settings.PAYMENT_RETRY_CAP_SECONDS, settings.PAYMENT_RETRY_BASE_SECONDS * 2**attempt
    )
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security


def payment_mark_succeeded(*, payment_id: int, provider_reference: str) -> bool:
    """Settles a pending payment as paid and the order with it; False if already settled."""
    with transaction.atomic():
        moved = Payment.objects.filter(pk=payment_id, status=PaymentStatus.PENDING).update(
            status=PaymentStatus.SUCCEEDED,
            provider_reference=provider_reference,
            updated_at=timezone.now(),
        )
        if not moved:
            return payment_late_success(
                payment_id=payment_id, provider_reference=provider_reference
            )
        payment = Payment.objects.get(pk=payment_id)
        try:
            order_transition(
                order_id=payment.order_id, to_status=OrderStatus.PAID, reason="payment succeeded"
            )
        except IllegalTransition:
            # The order was cancelled (e.g. expired) while the charge went through:
            # the customer must get the money back.
            logger.warning("payment %s succeeded on a closed order; refunding", payment_id)
            _refund_record(payment)
    domain_metrics.PAYMENTS.labels("succeeded").inc()
    return True


@dataclass(frozen=True)
class ReportedCharge:
    """What the provider says it charged for one of our payments."""

    payment_id: int
    provider_reference: str
    amount: Decimal
    currency: str


def payment_charge_report(*, charge: ReportedCharge) -> PaymentDiscrepancy | bool:
    """Applies the provider's report of a successful charge, if it matches the payment.

    A charge of another amount or currency than the payment's never settles it:
    the payment and its order stay as they are, the report is recorded once as
    a :class:`PaymentDiscrepancy` for staff and returned. Otherwise the result
    is :func:`payment_mark_succeeded`'s (False for a payment already settled).

    Refusing does not depend on the payment's status: a mismatching report about
    a payment already settled is just as much for staff to look at.
    """
    payment = Payment.objects.get(pk=charge.payment_id)
    expected_currency = str(settings.PAYMENT_CURRENCY).upper()
    amount_differs = charge.amount != payment.amount
    currency_differs = charge.currency.upper() != expected_currency
    if not (amount_differs or currency_differs):
        return payment_mark_succeeded(
            payment_id=payment.pk, provider_reference=charge.provider_reference
        )
    kind = (
        DiscrepancyKind.AMOUNT_AND_CURRENCY
        if amount_differs and currency_differs
        else DiscrepancyKind.AMOUNT
        if amount_differs
        else DiscrepancyKind.CURRENCY
    )
    reported_amount = str(charge.amount)[:64]
    reported_currency = charge.currency[:16]
    provider_reference = charge.provider_reference[:128]
    discrepancy, created = PaymentDiscrepancy.objects.get_or_create(
        payment=payment,
        provider_reference=provider_reference,
        reported_amount=reported_amount,
        reported_currency=reported_currency,
        defaults={
            "kind": kind,
            "expected_amount": payment.amount,
            "expected_currency": expected_currency,
        },
    )
    logger.warning(
        "payment %s: provider reported a charge of %s %s, expected %s %s; refused (%s)",
        payment.pk,
        reported_amount,
        reported_currency,
        payment.amount,
        expected_currency,
        "recorded" if created else "already recorded",
    )
    return discrepancy


def payment_late_success(*, payment_id: int, provider_reference: str) -> bool:
    """A charge that went through after we had given the payment up: give the money back.

    The order already moved on (payment failed, stock released), so the charge
    is recorded on the payment and refunded; False if the payment was not failed.
    """
    with transaction.atomic():
        moved = Payment.objects.filter(pk=payment_id, status=PaymentStatus.FAILED).update(
            status=PaymentStatus.SUCCEEDED,
            provider_reference=provider_reference,
            failure_reason="charged after the payment was given up; refunding",
            updated_at=timezone.now(),
        )
        if not moved:
            return False
        logger.warning("payment %s was charged after it was given up; refunding", payment_id)
        _refund_record(Payment.objects.get(pk=payment_id))
    domain_metrics.PAYMENTS.labels("late_success").inc()
    return True


# Why a payment failed, as counted by ``emporium_payments_total{outcome}``: the
# provider declined the charge, refused our request, or never answered in time.
FailureOutcome = Literal["declined", "rejected", "failed"]


def payment_mark_failed(
    *,
    payment_id: int,
    reason: str,
    outcome: FailureOutcome = "failed",
    outcome_unknown: bool = False,
) -> bool:
    """Settles a pending payment as failed, and its pending order; False if already settled.

    ``outcome_unknown`` says we stopped asking without a decision (timeouts): the
    provider may still complete the charge, so a reconciliation is scheduled that
    asks it later and refunds a charge it finds.
    """
    with transaction.atomic():
        moved = Payment.objects.filter(pk=payment_id, status=PaymentStatus.PENDING).update(
            status=PaymentStatus.FAILED, failure_reason=reason[:255], updated_at=timezone.now()
        )
        if not moved:
            return False
        payment = Payment.objects.get(pk=payment_id)
        _payment_event(events.PAYMENT_FAILED, payment, reason=reason)
        if outcome_unknown:
            _payment_event(events.PAYMENT_RECONCILE_REQUESTED, payment)
        # An order already cancelled has nothing more to move.
        with contextlib.suppress(IllegalTransition):
            order_transition(
                order_id=payment.order_id, to_status=OrderStatus.PAYMENT_FAILED, reason=reason[:255]
            )
    domain_metrics.PAYMENTS.labels(outcome).inc()
    return True


def _payment_event(event_type: str, payment: Payment, **extra: str) -> None:
    events.event_record(
        event_type=event_type,
        aggregate_type="payment",
        aggregate_id=payment.pk,
        payload={"payment_id": payment.pk, "order_id": payment.order_id, **extra},
    )


def _refund_record(payment: Payment) -> None:
    _payment_event(events.PAYMENT_REFUND_REQUESTED, payment, amount=str(payment.amount))


def payments_stuck_pending(*, older_than_seconds: int) -> list[int]:
    """Pending payments nobody is working on any more (their event was parked, their
    message dead-lettered, or their task hit its time limit): ids, oldest first."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Payment.objects.filter(status=PaymentStatus.PENDING, updated_at__lt=cutoff)
        .order_by("updated_at")
        .values_list("pk", flat=True)[:500]
    )


def payment_refund_request(*, order_id: int) -> int:
    """Asks (through the outbox) for every succeeded payment of the order to be refunded.

    Returns how many were asked for. The refund task refunds a payment once
    whatever the number of requests (its provider key is derived from the
    payment id, and settling is a conditional UPDATE).
    """
    payments = list(
        Payment.objects.filter(order_id=order_id, status=PaymentStatus.SUCCEEDED).order_by("pk")
    )
    for payment in payments:
        _refund_record(payment)
    return len(payments)


def payment_refund_for_cancelled_order(*, order_id: int, from_status: str) -> int:
    """What payments do when an order is cancelled: refund it if it had been paid.

    Called by the handler of the ``order.cancelled`` event, in the relay's
    transaction; the orders app never calls payments.
    """
    if from_status != OrderStatus.PAID:
        return 0
    return payment_refund_request(order_id=order_id)


def payment_mark_refunded(*, payment_id: int, refund_reference: str) -> bool:
    moved = Payment.objects.filter(pk=payment_id, status=PaymentStatus.SUCCEEDED).update(
        status=PaymentStatus.REFUNDED,
        refund_reference=refund_reference,
        updated_at=timezone.now(),
    )
    if moved:
        domain_metrics.PAYMENTS.labels("refunded").inc()
    return bool(moved)
