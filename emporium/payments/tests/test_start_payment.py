"""Contract and permission tests of POST /api/orders/<id>/payments/ (starting a payment)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from rest_framework.fields import DateTimeField
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.core.tests.factories import (
    OrderFactory,
    PaymentFactory,
    StaffFactory,
    UserFactory,
    client_for,
)
from emporium.integrations.models import OutboxEvent
from emporium.orders.models import Order, OrderStatus
from emporium.payments.models import Payment, PaymentStatus

pytestmark = pytest.mark.django_db

NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "details": {}}}
CARD = {"payment_method": "card", "token": "tok_visa"}


def start_url(order_id: int) -> str:
    return f"/api/orders/{order_id}/payments/"


def start(client: APIClient, order_id: int, body: dict[str, str], **extra: Any) -> Any:
    return client.post(start_url(order_id), body, format="json", **extra)


def payment_body(payment: Payment) -> dict[str, Any]:
    payment.refresh_from_db()
    return {
        "id": payment.pk,
        "order": payment.order_id,
        "payment_method": payment.payment_method,
        "amount": f"{payment.amount:.2f}",
        "status": payment.status,
        "failure_reason": payment.failure_reason,
        "created_at": DateTimeField().to_representation(payment.created_at),
        "updated_at": DateTimeField().to_representation(payment.updated_at),
    }


def written() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every payment and outbox row, to show that a refused request wrote nothing."""
    payments = list(Payment.objects.order_by("id").values_list("id", "order_id", "status"))
    events = list(OutboxEvent.objects.order_by("id").values_list("id", "event_type"))
    return payments, events


@pytest.fixture
def customer() -> User:
    return UserFactory()


@pytest.fixture
def client(customer: User) -> APIClient:
    return client_for(customer)


@pytest.fixture
def order(customer: User) -> Order:
    return OrderFactory(user=customer, total_amount=Decimal("137.45"))


def test_owner_starts_a_pending_payment_for_the_order_total(
    client: APIClient, order: Order
) -> None:
    response = start(client, order.pk, {"payment_method": "paypal", "token": "tok_visa"})

    assert response.status_code == 201
    payment = Payment.objects.get()
    assert response.json() == payment_body(payment)
    assert response.json()["amount"] == "137.45"
    assert response.json()["status"] == "pending"
    assert "provider_token" not in response.json()
    assert payment.order_id == order.pk
    assert payment.payment_method == "paypal"
    assert payment.amount == Decimal("137.45")
    assert payment.provider_token == "tok_visa"
    assert payment.provider_reference == ""
    order.refresh_from_db()
    assert order.order_status == OrderStatus.PENDING_PAYMENT


def test_starting_records_one_payment_requested_event(client: APIClient, order: Order) -> None:
    response = start(client, order.pk, CARD)

    payment_id = response.json()["id"]
    event = OutboxEvent.objects.get()
    assert event.event_type == "payment.requested"
    assert event.aggregate_type == "payment"
    assert event.aggregate_id == str(payment_id)
    assert event.payload == {"payment_id": payment_id, "order_id": order.pk, "amount": "137.45"}
    assert event.published_at is None  # the relay sends it after the commit


def test_another_customers_order_is_not_found_and_nothing_is_written(client: APIClient) -> None:
    foreign = OrderFactory(user=UserFactory())
    before = written()

    response = start(client, foreign.pk, CARD)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert written() == before


def test_staff_cannot_pay_a_customers_order_either(order: Order) -> None:
    response = start(client_for(StaffFactory()), order.pk, CARD)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert not Payment.objects.exists()


def test_unknown_order_is_not_found(client: APIClient) -> None:
    response = start(client, 987654, CARD)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_anonymous_caller_is_refused(order: Order) -> None:
    response = start(APIClient(), order.pk, CARD)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert not Payment.objects.exists()


def test_unknown_payment_method_is_invalid_and_nothing_is_written(
    client: APIClient, order: Order
) -> None:
    response = start(client, order.pk, {"payment_method": "bitcoin", "token": "tok_visa"})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": "The request contains invalid data.",
            "details": {"payment_method": ['"bitcoin" is not a valid choice.']},
        }
    }
    assert written() == ([], [])


def test_payment_methods_come_from_settings(client: APIClient, order: Order, settings: Any) -> None:
    settings.PAYMENT_METHODS = ["card"]

    response = start(client, order.pk, {"payment_method": "paypal", "token": "tok_visa"})

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "payment_method": ['"paypal" is not a valid choice.']
    }
    assert written() == ([], [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payment_method": "card"}, "token"),
        ({"payment_method": "card", "token": "4111 1111 1111 1111"}, "token"),
        ({"payment_method": "card", "token": "t" * 129}, "token"),
        ({"token": "tok_visa"}, "payment_method"),
    ],
)
def test_missing_or_malformed_fields_are_invalid(
    client: APIClient, order: Order, body: dict[str, str], field: str
) -> None:
    response = start(client, order.pk, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert list(response.json()["error"]["details"]) == [field]
    assert written() == ([], [])


@pytest.mark.parametrize(
    "status",
    [
        OrderStatus.PAID,
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.CANCELLED,
        OrderStatus.PAYMENT_FAILED,
    ],
)
def test_an_order_not_awaiting_payment_cannot_be_paid(
    client: APIClient, customer: User, status: str
) -> None:
    closed = OrderFactory(user=customer, order_status=status)
    before = written()

    response = start(client, closed.pk, CARD)

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "payment_not_allowed",
            "message": f"An order that is {status} cannot be paid.",
            "details": {"order_status": status},
        }
    }
    assert written() == before


@pytest.mark.parametrize("live_status", [PaymentStatus.PENDING, PaymentStatus.SUCCEEDED])
def test_a_second_payment_while_one_is_live_is_refused(
    client: APIClient, order: Order, live_status: str
) -> None:
    # A succeeded payment normally moves the order to paid; the order is left
    # pending here so that only the database constraint stands in the way.
    live = PaymentFactory(order=order, status=live_status, amount=order.total_amount)
    before = written()

    response = start(client, order.pk, CARD)

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "payment_not_allowed",
            "message": "This order already has a payment in progress or completed.",
            "details": {"order": order.pk},
        }
    }
    assert written() == before
    assert list(Payment.objects.values_list("id", flat=True)) == [live.pk]


def test_two_starts_in_a_row_leave_one_pending_payment(client: APIClient, order: Order) -> None:
    first = start(client, order.pk, CARD)
    second = start(client, order.pk, {"payment_method": "paypal", "token": "tok_other"})

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "payment_not_allowed"
    assert list(Payment.objects.values_list("id", "status")) == [(first.json()["id"], "pending")]
    assert OutboxEvent.objects.filter(event_type="payment.requested").count() == 1


def test_failed_or_refunded_payments_do_not_block_a_new_one(
    client: APIClient, order: Order
) -> None:
    PaymentFactory(order=order, status=PaymentStatus.FAILED)
    PaymentFactory(order=order, status=PaymentStatus.REFUNDED)

    response = start(client, order.pk, CARD)

    assert response.status_code == 201
    assert Payment.objects.filter(order=order, status=PaymentStatus.PENDING).count() == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (PaymentStatus.PENDING, PaymentStatus.PENDING),
        (PaymentStatus.PENDING, PaymentStatus.SUCCEEDED),
        (PaymentStatus.SUCCEEDED, PaymentStatus.SUCCEEDED),
    ],
)
def test_database_allows_one_live_payment_per_order(order: Order, first: str, second: str) -> None:
    PaymentFactory(order=order, status=first)

    # PostgreSQL names the constraint; SQLite names the columns of the unique index.
    violation = "payment_one_live_per_order|UNIQUE constraint failed: payments_payment.order_id"
    with pytest.raises(IntegrityError, match=violation), transaction.atomic():
        PaymentFactory(order=order, status=second)

    assert Payment.objects.filter(order=order).count() == 1


def test_idempotency_key_replays_the_first_answer(client: APIClient, order: Order) -> None:
    headers = {"Idempotency-Key": "pay-order-once"}

    first = start(client, order.pk, CARD, headers=headers)
    again = start(client, order.pk, CARD, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1
    assert OutboxEvent.objects.count() == 1
