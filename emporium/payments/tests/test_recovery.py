"""Payments nobody works on any more are picked up again; refused refunds stay visible."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from emporium.core.tests.factories import OrderFactory, PaymentFactory
from emporium.orders.models import Order, OrderStatus
from emporium.payments import services, tasks
from emporium.payments.models import Payment, PaymentStatus
from tests.support.processes import ProviderProcess

pytestmark = pytest.mark.django_db


def make_payment(*, status: str = PaymentStatus.PENDING, age: timedelta = timedelta(0)) -> Payment:
    order = OrderFactory(total_amount=Decimal("20.00"))
    payment = PaymentFactory(
        order=order, amount=Decimal("20.00"), provider_token="tok_visa", status=status
    )
    Payment.objects.filter(pk=payment.pk).update(updated_at=timezone.now() - age)
    return payment


def test_only_pending_payments_older_than_the_threshold_are_stuck() -> None:
    stuck = make_payment(age=timedelta(minutes=20))
    make_payment(age=timedelta(minutes=5))  # still within its retry budget
    make_payment(status=PaymentStatus.SUCCEEDED, age=timedelta(hours=1))
    make_payment(status=PaymentStatus.FAILED, age=timedelta(hours=1))

    assert services.payments_stuck_pending(older_than_seconds=900) == [stuck.pk]


def test_recovering_a_stuck_payment_charges_it_once(
    payment_provider: ProviderProcess, settings: Any
) -> None:
    settings.PAYMENT_STUCK_AFTER_SECONDS = 900
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        stuck = make_payment(age=timedelta(minutes=30))

        assert tasks.payments_recover_stuck.apply().get() == 1
        assert tasks.payments_recover_stuck.apply().get() == 0  # settled: nothing left
    finally:
        app.conf.task_always_eager = False

    stuck.refresh_from_db()
    assert stuck.status == PaymentStatus.SUCCEEDED
    assert len(payment_provider.charges_for(f"payment-{stuck.pk}")) == 1
    assert Order.objects.get(pk=stuck.order_id).order_status == OrderStatus.PAID


def test_settling_a_payment_stamps_updated_at() -> None:
    payment = make_payment(age=timedelta(hours=2))
    before = Payment.objects.get(pk=payment.pk).updated_at

    services.payment_mark_failed(payment_id=payment.pk, reason="declined: declined")

    assert Payment.objects.get(pk=payment.pk).updated_at > before


def test_a_refund_keeps_its_own_reference(payment_provider: ProviderProcess) -> None:
    payment = make_payment()
    assert tasks.payment_process.apply(args=(payment.pk,)).get() == "succeeded"

    assert tasks.payment_refund.apply(args=(payment.pk,)).get() == "refunded"

    payment.refresh_from_db()
    refund = payment_provider.ledger()["refunds"][0]
    assert payment.status == PaymentStatus.REFUNDED
    assert payment.refund_reference == refund["id"]
    assert payment.failure_reason == ""


def test_a_refund_the_provider_refuses_leaves_the_payment_for_a_person(
    payment_provider: ProviderProcess,
) -> None:
    payment = make_payment(status=PaymentStatus.SUCCEEDED)
    Payment.objects.filter(pk=payment.pk).update(provider_reference="ch_unknown_to_provider")

    assert tasks.payment_refund.apply(args=(payment.pk,)).get() == "refused"

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment_provider.ledger()["refunds"] == []
