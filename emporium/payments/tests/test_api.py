"""Contract and permission tests of the read-only /api/payments/ resource."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
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
from emporium.payments.models import Payment, PaymentMethod, PaymentStatus
from emporium.payments.selectors import payment_list_for_user

pytestmark = pytest.mark.django_db

LIST_URL = "/api/payments/"
NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "details": {}}}


def detail_url(payment_id: int) -> str:
    return f"/api/payments/{payment_id}/"


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


def make_payment(user: User, *, minutes_ago: int = 0, **fields: Any) -> Payment:
    payment = PaymentFactory(order=OrderFactory(user=user), **fields)
    if minutes_ago:
        Payment.objects.filter(pk=payment.pk).update(
            created_at=timezone.now() - datetime.timedelta(minutes=minutes_ago)
        )
    return payment


def snapshot() -> list[tuple[Any, ...]]:
    return list(
        Payment.objects.order_by("id").values_list(
            "id", "order_id", "payment_method", "amount", "status", "updated_at"
        )
    )


@pytest.fixture
def customer() -> User:
    return UserFactory()


@pytest.fixture
def client(customer: User) -> APIClient:
    return client_for(customer)


def test_owner_sees_the_payment_with_exact_values(customer: User, client: APIClient) -> None:
    payment = make_payment(
        customer,
        amount=Decimal("123.45"),
        payment_method=PaymentMethod.PAYPAL,
        status=PaymentStatus.FAILED,
        failure_reason="card declined",
        provider_reference="secret-ref",
    )

    response = client.get(detail_url(payment.pk))

    assert response.status_code == 200
    assert response.json() == payment_body(payment)
    assert response.json()["amount"] == "123.45"
    assert response.json()["status"] == "failed"
    assert "provider_reference" not in response.json()


def test_owner_list_is_own_payments_newest_first(customer: User, client: APIClient) -> None:
    older = make_payment(customer, minutes_ago=10)
    newer = make_payment(customer, minutes_ago=5)
    make_payment(UserFactory())

    response = client.get(LIST_URL)

    assert response.status_code == 200
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [payment_body(newer), payment_body(older)],
    }


def test_list_is_keyset_paginated(customer: User, client: APIClient) -> None:
    payments = [make_payment(customer, minutes_ago=m) for m in (30, 20, 10)]

    first = client.get(LIST_URL, {"page_size": 2})
    second = client.get(first.json()["next"])

    assert [row["id"] for row in first.json()["results"]] == [payments[2].pk, payments[1].pk]
    assert [row["id"] for row in second.json()["results"]] == [payments[0].pk]
    assert second.json()["next"] is None


def test_other_customers_payment_is_not_found(client: APIClient) -> None:
    foreign = make_payment(UserFactory())

    response = client.get(detail_url(foreign.pk))

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_staff_see_every_payment() -> None:
    first = make_payment(UserFactory(), minutes_ago=2)
    second = make_payment(UserFactory(), minutes_ago=1)
    staff_client = client_for(StaffFactory())

    listed = staff_client.get(LIST_URL)

    assert listed.status_code == 200
    assert listed.json()["results"] == [payment_body(second), payment_body(first)]
    assert staff_client.get(detail_url(first.pk)).json() == payment_body(first)


def test_selector_scopes_by_order_owner(customer: User) -> None:
    own = make_payment(customer)
    foreign = make_payment(UserFactory())

    assert list(payment_list_for_user(user=customer)) == [own]
    assert set(payment_list_for_user(user=StaffFactory())) == {own, foreign}


def test_list_query_count_is_fixed(
    customer: User, client: APIClient, django_assert_num_queries: Any
) -> None:
    for _ in range(5):
        make_payment(customer)

    # user (token), the user's permissions, one page of payments
    with django_assert_num_queries(3):
        response = client.get(LIST_URL)

    assert len(response.json()["results"]) == 5


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("on_detail", [False, True])
def test_writes_are_not_allowed(
    customer: User, client: APIClient, method: str, on_detail: bool
) -> None:
    payment = make_payment(customer)
    before = snapshot()
    url = detail_url(payment.pk) if on_detail else LIST_URL

    response = getattr(client, method)(
        url, {"order": payment.order_id, "amount": "0.00", "status": "succeeded"}, format="json"
    )

    assert response.status_code == 405
    assert response.json() == {
        "error": {
            "code": "method_not_allowed",
            "message": f'Method "{method.upper()}" not allowed.',
            "details": {},
        }
    }
    assert snapshot() == before


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
@pytest.mark.parametrize("on_detail", [False, True])
def test_anonymous_is_unauthorised(method: str, on_detail: bool) -> None:
    payment = make_payment(UserFactory())
    before = snapshot()
    url = detail_url(payment.pk) if on_detail else LIST_URL

    response = getattr(APIClient(), method)(url, {"status": "succeeded"}, format="json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert snapshot() == before
