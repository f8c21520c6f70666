"""How many statements ``GET /api/orders/`` and ``GET /api/orders/{id}/`` cost, pinned.

A customer with 30 orders of two lines each (the bench's customer, bench/orders.py):
the first page and one order's detail each take two statements, whatever the
number of orders or lines: the orders, and all their lines in one prefetch. The
token's user and its permissions (the view checks ``orders.view_order`` to choose
between everyone's orders and one's own) come from the authentication state
(``emporium.accounts.access``), read by the customer's first request (two
statements then) and kept. A change that adds one fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from emporium.core.tests.factories import (
    OrderFactory,
    OrderItemFactory,
    ProductFactory,
    UserFactory,
    client_for,
)
from emporium.orders.models import Order
from emporium.orders.serializers import OrderSerializer

pytestmark = pytest.mark.django_db

ORDERS = 30
LIST_STATEMENTS = 2
DETAIL_STATEMENTS = 2
STATE_STATEMENTS = 2  # the account's row and its permissions, on a request that finds no state


def _customer_with_orders(orders: int) -> tuple[Any, list[Any]]:
    customer = UserFactory()
    products = [ProductFactory() for _ in range(2)]
    made = []
    for _ in range(orders):
        order = OrderFactory(user=customer)
        for product in products:
            OrderItemFactory(order=order, product=product)
        made.append(order)
    return customer, made


@pytest.mark.parametrize("orders", [3, ORDERS])
def test_the_first_page_of_my_orders_takes_a_fixed_number_of_statements(
    orders: int, django_assert_num_queries: Any
) -> None:
    customer, _ = _customer_with_orders(orders)
    client = client_for(customer)

    with django_assert_num_queries(STATE_STATEMENTS + LIST_STATEMENTS):
        assert client.get("/api/orders/").status_code == 200
    with django_assert_num_queries(LIST_STATEMENTS):
        response = client.get("/api/orders/")

    assert response.status_code == 200
    page = response.json()["results"]
    assert len(page) == min(orders, 20)
    assert all(len(order["items"]) == 2 for order in page)


def test_one_order_takes_a_fixed_number_of_statements(django_assert_num_queries: Any) -> None:
    customer, orders = _customer_with_orders(ORDERS)
    client = client_for(customer)
    assert client.get("/api/auth/me/").status_code == 200  # reads the account's state

    with django_assert_num_queries(DETAIL_STATEMENTS):
        response = client.get(f"/api/orders/{orders[0].pk}/")

    assert response.status_code == 200
    assert len(response.json()["items"]) == 2


def test_the_list_and_the_detail_render_each_order_as_its_serializer_does() -> None:
    customer, orders = _customer_with_orders(3)
    orders[1].shipping_address = "1 Bench Street"
    orders[1].phone = "+49 30 1234567"
    orders[1].save()
    client = client_for(customer)
    expected = {
        order.pk: OrderSerializer(Order.objects.prefetch_related("items").get(pk=order.pk)).data
        for order in orders
    }

    listed = client.get("/api/orders/").json()["results"]
    one = client.get(f"/api/orders/{orders[1].pk}/").json()

    assert {order["id"]: order for order in listed} == expected
    assert one == expected[orders[1].pk]
