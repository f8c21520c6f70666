"""The domain's metrics move with what really happened: checkouts, payments, telemetry.

Each test reads the counters of this process before and after driving the real
code path (the API, a settlement), so other
tests' counts never matter.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pybreaker
import pytest
from rest_framework.test import APIClient

from emporium.core.tests.factories import (
    OrderFactory,
    PaymentFactory,
    ProductFactory,
    UserFactory,
    client_for,
)
from emporium.delivery.tests.support import (
    device_client,
    make_device,
    point,
    post_json,
    recent_minute,
)
from emporium.observability.tests.metric_samples import sample
from emporium.orders.models import Order
from emporium.orders.tests.support import ORDERS_URL, cart_fill
from emporium.payments import services as payment_services
from emporium.payments.gateway import provider_breaker

ORDERS = "emporium_checkout_orders_total"
REFUSALS = "emporium_checkout_refusals_total"


# -- checkout ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_checkout_through_the_api_counts_one_order() -> None:
    customer = UserFactory()
    cart_fill(customer, [(ProductFactory(stock_quantity=5), 2)])
    before = sample(ORDERS)

    response = client_for(customer).post(ORDERS_URL)

    assert response.status_code == 201
    assert sample(ORDERS) == before + 1


@pytest.mark.django_db
def test_a_checkout_refused_for_stock_counts_its_reason_and_no_order() -> None:
    customer = UserFactory()
    cart_fill(customer, [(ProductFactory(stock_quantity=1), 3)])
    before = (sample(ORDERS), sample(REFUSALS, reason="insufficient_stock"))

    response = client_for(customer).post(ORDERS_URL)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "insufficient_stock"
    assert (sample(ORDERS), sample(REFUSALS, reason="insufficient_stock")) == (
        before[0],
        before[1] + 1,
    )
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_a_checkout_of_an_empty_cart_counts_cart_empty() -> None:
    before = sample(REFUSALS, reason="cart_empty")

    response = client_for(UserFactory()).post(ORDERS_URL)

    assert response.json()["error"]["code"] == "cart_empty"
    assert sample(REFUSALS, reason="cart_empty") == before + 1


# -- payments ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_payment_outcome_is_counted_once_however_often_it_is_reported() -> None:
    payment = PaymentFactory(order=OrderFactory(total_amount=Decimal("20.00")))
    before = sample("emporium_payments_total", outcome="declined")

    for _ in range(2):  # the task and the provider's webhook report the same decline
        payment_services.payment_mark_failed(
            payment_id=payment.pk, reason="declined: card_declined", outcome="declined"
        )

    assert sample("emporium_payments_total", outcome="declined") == before + 1


@pytest.mark.django_db
def test_a_settled_success_and_its_refund_are_counted() -> None:
    payment = PaymentFactory(order=OrderFactory(total_amount=Decimal("20.00")))
    before = {
        outcome: sample("emporium_payments_total", outcome=outcome)
        for outcome in ("succeeded", "refunded")
    }

    payment_services.payment_mark_succeeded(payment_id=payment.pk, provider_reference="ch_1")
    payment_services.payment_mark_refunded(payment_id=payment.pk, refund_reference="re_1")
    payment_services.payment_mark_refunded(payment_id=payment.pk, refund_reference="re_1")

    assert sample("emporium_payments_total", outcome="succeeded") == before["succeeded"] + 1
    assert sample("emporium_payments_total", outcome="refunded") == before["refunded"] + 1


def test_the_breaker_gauge_follows_the_breaker() -> None:
    provider_breaker.cache_clear()
    breaker = provider_breaker()
    try:
        breaker.open()
        assert sample("emporium_payment_breaker_open") == 1
        breaker.half_open()
        assert sample("emporium_payment_breaker_open") == 0
        breaker.open()
        breaker.close()
        assert sample("emporium_payment_breaker_open") == 0
    finally:
        breaker.close()
        provider_breaker.cache_clear()


def test_a_breaker_opened_by_another_process_shows_at_this_ones_next_call(
    redis_url: str, settings: Any
) -> None:
    from emporium.observability import domain_metrics

    settings.EMPORIUM_BREAKER_REDIS_URL = redis_url
    provider_breaker.cache_clear()
    here = provider_breaker()
    elsewhere = provider_breaker.__wrapped__()  # another worker's breaker on the same Redis state
    try:
        here.close()
        elsewhere.open()
        domain_metrics.PAYMENT_BREAKER_OPEN.set(0)  # as this process last saw it: closed

        with pytest.raises(pybreaker.CircuitBreakerError):
            here.call(lambda: None)

        assert sample("emporium_payment_breaker_open") == 1
    finally:
        here.close()
        provider_breaker.cache_clear()


# -- telemetry -----------------------------------------------------------------------


def _points() -> dict[str, float]:
    return {
        result: sample("emporium_telemetry_points_total", result=result)
        for result in ("accepted", "duplicate", "rejected")
    }


@pytest.mark.django_db
def test_telemetry_counts_match_the_answer_to_a_batch() -> None:
    device, token = make_device()
    client: APIClient = device_client(token)
    start = recent_minute()
    post_json(client, [point(device, start)])  # stored before: a duplicate below
    before, batches = _points(), sample("emporium_telemetry_ingest_duration_seconds_count")
    batch: list[Any] = [
        point(device, start),
        point(device, start + timedelta(seconds=1)),
        point(device, start + timedelta(seconds=2)),
        point(device, start + timedelta(seconds=2)),  # repeated in the batch
        point(device, start + timedelta(seconds=3), latitude=123.0),
        "not a point",
    ]

    body = post_json(client, batch).json()

    assert (body["accepted"], body["duplicates"], len(body["rejected"])) == (2, 2, 2)
    after = _points()
    assert {result: after[result] - before[result] for result in after} == {
        "accepted": 2,
        "duplicate": 2,
        "rejected": 2,
    }
    assert sample("emporium_telemetry_ingest_duration_seconds_count") == batches + 1
