"""One request id finds everything a request caused, across the outbox, the broker and a worker.

A checkout and a payment request are sent with ids of their own; the relay
runs in this process and a real Celery worker (RabbitMQ, PostgreSQL, the
simulated provider) runs the tasks the events start. Each id must be on the
events the request recorded, on the relay's lines about them, on every line
the worker wrote for their tasks, on the events those tasks recorded, and in
the provider's record of the calls made for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from kombu import Connection
from rest_framework.test import APIClient

from conftest import require_service
from emporium.core import correlation
from emporium.core.tests.factories import (
    PASSWORD,
    OrderFactory,
    PaymentFactory,
    ProductFactory,
    UserFactory,
)
from emporium.integrations.models import OutboxEvent
from emporium.integrations.relay import outbox_relay_pending
from emporium.observability.tests.logs import CapturedLogs, logs_captured
from emporium.payments import services as payment_services
from emporium.payments.gateway import default_gateway, provider_breaker
from emporium.payments.models import Payment, PaymentStatus
from tests.support.processes import ProviderProcess, WorkerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CHECKOUT_ID = "checkout-5f0c2a"
PAYMENT_ID = "pay-91b7e4"


def worker_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in worker.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def purge(broker_url: str, *queues: str) -> None:
    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.channel()
        for name in queues:
            try:
                channel.queue_purge(name)
            except connection.channel_errors:
                channel = connection.channel()  # not declared yet: nothing to drop
        channel.close()


def test_a_checkout_and_its_payment_are_found_by_their_request_ids(
    payment_provider: ProviderProcess, start_worker: Callable[..., WorkerProcess]
) -> None:
    require_service("DATABASE_URL")
    broker_url = require_service("BROKER_URL")
    purge(broker_url, "payments", "email")
    user = UserFactory()
    product = ProductFactory(price=Decimal("12.50"), stock_quantity=10)
    client = APIClient()
    signed_in = client.post(
        "/api/auth/login/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {signed_in.json()['access']}")
    client.post("/api/cart/items/", {"product": product.pk, "quantity": 2}, format="json")

    with logs_captured() as logs:
        checkout = client.post("/api/orders/", HTTP_X_REQUEST_ID=CHECKOUT_ID)
        order_id = checkout.json()["id"]
        paying = client.post(
            f"/api/orders/{order_id}/payments/",
            {"payment_method": "card", "token": "tok_visa"},
            format="json",
            HTTP_X_REQUEST_ID=PAYMENT_ID,
        )
        assert outbox_relay_pending() == 2

    assert (checkout.status_code, checkout["X-Request-ID"]) == (201, CHECKOUT_ID)
    assert paying.status_code in (201, 202), paying.content
    assert paying["X-Request-ID"] == PAYMENT_ID
    recorded = {
        event.event_type: event.correlation["request_id"] for event in OutboxEvent.objects.all()
    }
    assert recorded == {"order.placed": CHECKOUT_ID, "payment.requested": PAYMENT_ID}
    relayed = {
        line["event"].split()[2]: line["request_id"]
        for line in logs.lines()
        if line["logger"] == "emporium.integrations.relay" and line["event"].endswith("relayed")
    }
    assert relayed == {"order.placed": CHECKOUT_ID, "payment.requested": PAYMENT_ID}
    access = {line["path"]: line["request_id"] for line in logs.access()}
    assert access == {
        "/api/orders/": CHECKOUT_ID,
        f"/api/orders/{order_id}/payments/": PAYMENT_ID,
    }

    worker = start_worker(queues="payments,email")
    payment = Payment.objects.get(order_id=order_id)
    assert wait_until(
        lambda: Payment.objects.get(pk=payment.pk).status == PaymentStatus.SUCCEEDED, timeout=30
    ), worker.log()
    assert wait_until(
        lambda: any(
            line.get("task") == "orders.send_confirmation_email" for line in worker_lines(worker)
        ),
        timeout=30,
    ), worker.log()

    by_task: dict[str, set[str]] = {}
    for line in worker_lines(worker):
        if "task" in line:
            by_task.setdefault(line["task"], set()).add(line["request_id"])
    assert by_task == {
        "orders.send_confirmation_email": {CHECKOUT_ID},
        "payments.process": {PAYMENT_ID},
    }, worker.log()
    # What the payment task recorded, and what it asked the provider, carry the id too.
    assert OutboxEvent.objects.get(event_type="order.paid").correlation["request_id"] == PAYMENT_ID
    assert payment_provider.ledger()["request_ids"] == [PAYMENT_ID]


def test_the_providers_callback_arrives_under_the_payments_request_id(
    payment_provider: ProviderProcess, live_server: Any, settings: Any
) -> None:
    """A charge sends the request id it is made under; the provider's signed callback
    brings it back, and the callback's access line carries it."""
    settings.PAYMENT_CALLBACK_URL = f"{live_server.url}/api/payments/webhook/"
    provider_breaker.cache_clear()
    order = OrderFactory(total_amount=Decimal("18.00"))
    payment = PaymentFactory(order=order, amount=Decimal("18.00"), provider_token="tok_visa")

    def callbacks(logs: CapturedLogs) -> list[dict[str, Any]]:
        return [line for line in logs.access() if line["path"] == "/api/payments/webhook/"]

    with logs_captured() as logs:
        with correlation.carried({"request_id": PAYMENT_ID}):
            default_gateway().charge(
                idempotency_key=payment_services.provider_idempotency_key(payment.pk),
                amount=payment.amount,
                currency="EUR",
                token="tok_visa",
                reference=f"payment-{payment.pk}",
            )
        assert wait_until(lambda: callbacks(logs) != [], timeout=15), logs.text

    [callback] = callbacks(logs)
    assert (callback["status"], callback["request_id"]) == (200, PAYMENT_ID), logs.text
    assert payment_provider.ledger()["request_ids"] == [PAYMENT_ID]
    assert Payment.objects.get(pk=payment.pk).status == PaymentStatus.SUCCEEDED
