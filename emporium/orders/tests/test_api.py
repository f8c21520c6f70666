"""Contract and permission tests of the read-only /api/orders/ resource."""

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
    OrderItemFactory,
    ProductFactory,
    StaffFactory,
    UserFactory,
    client_for,
)
from emporium.orders.models import Order, OrderItem, OrderStatus

pytestmark = pytest.mark.django_db

LIST_URL = "/api/orders/"
NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "details": {}}}


def detail_url(order_id: int) -> str:
    return f"/api/orders/{order_id}/"


def timestamp(value: datetime.datetime) -> str:
    return DateTimeField().to_representation(value)


def order_body(order: Order) -> dict[str, Any]:
    order.refresh_from_db()
    return {
        "id": order.pk,
        "user": order.user_id,
        "order_status": order.order_status,
        "total_amount": f"{order.total_amount:.2f}",
        "shipping_address": order.shipping_address,
        "phone": order.phone,
        "items": [
            {
                "id": item.pk,
                "product": item.product_id,
                "product_name": item.product.name,
                "quantity": item.quantity,
                "price": f"{item.price:.2f}",
                "line_total": f"{item.price * item.quantity:.2f}",
            }
            for item in order.items.order_by("id")
        ],
        "created_at": timestamp(order.created_at),
        "updated_at": timestamp(order.updated_at),
    }


def make_order(user: User, *, lines: list[tuple[str, int]], created_minutes_ago: int = 0) -> Order:
    """An order whose total is the exact sum of its (unit price, quantity) lines."""
    total = sum((Decimal(price) * quantity for price, quantity in lines), Decimal("0.00"))
    order = OrderFactory(user=user, total_amount=total)
    for price, quantity in lines:
        OrderItemFactory(
            order=order,
            product=ProductFactory(price=Decimal(price)),
            price=Decimal(price),
            quantity=quantity,
        )
    if created_minutes_ago:
        Order.objects.filter(pk=order.pk).update(
            created_at=timezone.now() - datetime.timedelta(minutes=created_minutes_ago)
        )
    order.refresh_from_db()
    return order


def snapshot() -> list[tuple[Any, ...]]:
    orders = Order.objects.order_by("id").values_list(
        "id", "user_id", "order_status", "total_amount", "updated_at"
    )
    items = OrderItem.objects.order_by("id").values_list(
        "id", "order_id", "product_id", "quantity", "price"
    )
    return [*orders, *items]


@pytest.fixture
def customer() -> User:
    return UserFactory()


@pytest.fixture
def client(customer: User) -> APIClient:
    return client_for(customer)


def test_owner_sees_their_order_with_items_and_exact_amounts(
    customer: User, client: APIClient
) -> None:
    order = make_order(customer, lines=[("19.99", 3), ("0.05", 7)])

    response = client.get(detail_url(order.pk))

    assert response.status_code == 200
    body = response.json()
    assert body == order_body(order)
    assert body["total_amount"] == "60.32"
    assert [(item["price"], item["line_total"]) for item in body["items"]] == [
        ("19.99", "59.97"),
        ("0.05", "0.35"),
    ]
    assert body["order_status"] == "pending_payment"


def test_owner_list_shows_only_their_orders(customer: User, client: APIClient) -> None:
    own = make_order(customer, lines=[("10.00", 2)])
    make_order(UserFactory(), lines=[("5.00", 1)])

    response = client.get(LIST_URL)

    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": [order_body(own)]}


def test_empty_list(client: APIClient) -> None:
    response = client.get(LIST_URL)

    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": []}


def test_other_customers_order_is_not_found(client: APIClient) -> None:
    foreign = make_order(UserFactory(), lines=[("1.00", 1)])

    response = client.get(detail_url(foreign.pk))

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert client.get(detail_url(999999)).json() == NOT_FOUND


def test_staff_see_every_order() -> None:
    first = make_order(UserFactory(), lines=[("1.00", 1)], created_minutes_ago=2)
    second = make_order(UserFactory(), lines=[("2.00", 2)], created_minutes_ago=1)
    staff_client = client_for(StaffFactory())

    listed = staff_client.get(LIST_URL)
    detail = staff_client.get(detail_url(first.pk))

    assert listed.status_code == 200
    assert listed.json()["results"] == [order_body(second), order_body(first)]
    assert detail.status_code == 200
    assert detail.json() == order_body(first)


def test_list_is_keyset_paginated_newest_first(customer: User, client: APIClient) -> None:
    # Two orders share a creation time: the id breaks the tie, newest id first.
    orders = [make_order(customer, lines=[("1.00", 1)], created_minutes_ago=m) for m in (50, 40)]
    same_time = timezone.now() - datetime.timedelta(minutes=30)
    for _ in range(2):
        order = make_order(customer, lines=[("1.00", 1)])
        Order.objects.filter(pk=order.pk).update(created_at=same_time)
        orders.append(order)
    orders.append(make_order(customer, lines=[("1.00", 1)], created_minutes_ago=10))
    expected = [orders[4].pk, orders[3].pk, orders[2].pk, orders[1].pk, orders[0].pk]

    pages = []
    response = client.get(LIST_URL, {"page_size": 2})
    while True:
        assert response.status_code == 200
        body = response.json()
        pages.append([row["id"] for row in body["results"]])
        if body["next"] is None:
            break
        assert body["next"].startswith("http://testserver/api/orders/?")
        response = client.get(body["next"])

    assert pages == [expected[0:2], expected[2:4], expected[4:5]]
    # ... and the last page links back to the one before it.
    previous = client.get(response.json()["previous"])
    assert [row["id"] for row in previous.json()["results"]] == expected[2:4]


def test_page_size_is_bounded_and_validated(customer: User, client: APIClient) -> None:
    make_order(customer, lines=[("1.00", 1)])

    assert len(client.get(LIST_URL, {"page_size": 100}).json()["results"]) == 1
    for bad_size in ("many", "101", "0"):
        bad = client.get(LIST_URL, {"page_size": bad_size})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "validation_error"
    cursor = client.get(LIST_URL, {"cursor": "garbage"})
    assert cursor.status_code == 400
    assert cursor.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("order_count", [1, 6])
def test_list_query_count_is_fixed(
    customer: User, client: APIClient, django_assert_num_queries: Any, order_count: int
) -> None:
    for _ in range(order_count):
        make_order(customer, lines=[("1.00", 1), ("2.00", 2), ("3.00", 3)])

    # user (token), the user's permissions, one page of orders, their items with the products
    with django_assert_num_queries(4):
        response = client.get(LIST_URL)

    assert response.status_code == 200
    assert len(response.json()["results"]) == order_count
    assert all(len(order["items"]) == 3 for order in response.json()["results"])


def test_detail_query_count(
    customer: User, client: APIClient, django_assert_num_queries: Any
) -> None:
    order = make_order(customer, lines=[("1.00", 1), ("2.00", 2)])

    # user (token), the user's permissions, the order, its items
    with django_assert_num_queries(4):
        response = client.get(detail_url(order.pk))

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "on_detail"),
    [("put", False), ("patch", False), ("delete", False)]
    + [(method, True) for method in ("post", "put", "patch", "delete")],
)
def test_direct_writes_are_not_allowed(
    customer: User, client: APIClient, method: str, on_detail: bool
) -> None:
    """Orders change only through checkout (POST on the list) and the status actions."""
    order = make_order(customer, lines=[("10.00", 1)])
    before = snapshot()
    url = detail_url(order.pk) if on_detail else LIST_URL

    response = getattr(client, method)(
        url, {"order_status": OrderStatus.PAID, "total_amount": "0.00"}, format="json"
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
    order = make_order(UserFactory(), lines=[("10.00", 1)])
    before = snapshot()
    url = detail_url(order.pk) if on_detail else LIST_URL

    response = getattr(APIClient(), method)(url, {"order_status": "paid"}, format="json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert snapshot() == before


def test_non_numeric_id_is_not_found(client: APIClient) -> None:
    response = client.get("/api/orders/abc/")

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
