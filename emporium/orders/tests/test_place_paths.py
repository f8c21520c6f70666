"""PostgreSQL's one-statement checkout against the portable ORM checkout, row for row.

``emporium_order_place`` (orders/sql/order_place.sql) repeats in SQL what
``_order_place_portable`` does. Each test sets up the same situation twice,
runs one path on each, and compares everything either could write or answer,
so a change to one that the other lacks fails here. On SQLite only the
portable path exists, so the comparisons need the real PostgreSQL server.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from emporium.accounts.models import User
from emporium.carts.models import CartItem
from emporium.catalog.models import Product
from emporium.core.tests.factories import CategoryFactory, ProductFactory, UserFactory
from emporium.integrations.models import OutboxEvent
from emporium.orders import services
from emporium.orders.models import Order
from emporium.orders.serializers import OrderSerializer, order_representation
from emporium.orders.tests.support import cart_fill
from emporium.realtime.models import OrderEvent

pytestmark = pytest.mark.django_db

Place = Callable[..., Order]
PATHS: dict[str, Place] = {
    "sql": services._order_place_postgresql,
    "orm": services._order_place_portable,
}


@pytest.fixture
def _postgresql(database_url: str) -> None:
    assert connection.vendor == "postgresql"


on_postgresql = pytest.mark.usefixtures("_postgresql")


def _world(prices_and_stock: list[tuple[str, int]]) -> tuple[User, list[Product]]:
    """A buyer and products with these prices and stock (same names on every call)."""
    category = CategoryFactory()
    products = [
        ProductFactory(
            name=f"Lamp {index}", price=Decimal(price), stock_quantity=stock, category=category
        )
        for index, (price, stock) in enumerate(prices_and_stock)
    ]
    return UserFactory(), products


def _written(user: User, products: list[Product]) -> dict[str, Any]:
    """Everything a checkout writes, with ids replaced by positions."""
    position = {product.pk: index for index, product in enumerate(products)}
    orders = list(Order.objects.filter(user=user))
    items = [
        (position[item.product_id], item.quantity, item.price, item.product_name)
        for order in orders
        for item in order.items.order_by("product_id")
    ]
    events = []
    for event in OutboxEvent.objects.order_by("created_at", "event_type", "aggregate_id"):
        payload = dict(event.payload)
        if event.event_type == "order.placed":
            if payload["user_id"] != user.pk:
                continue
            payload["order_id"] = payload["user_id"] = None
            payload["items"] = [
                {**line, "product_id": position[line["product_id"]]} for line in payload["items"]
            ]
        elif int(event.aggregate_id) in position:
            payload["product_id"] = position[payload["product_id"]]
        else:
            continue
        events.append((event.event_type, event.aggregate_type, payload, event.published_at))
    return {
        "orders": [(order.order_status, order.total_amount) for order in orders],
        "items": items,
        "stock": [Product.objects.get(pk=product.pk).stock_quantity for product in products],
        "cart": sorted(
            (position[product_id], quantity)
            for product_id, quantity in CartItem.objects.filter(cart__user=user).values_list(
                "product_id", "quantity"
            )
        ),
        "events": sorted(events, key=repr),
        "order_events": list(
            OrderEvent.objects.filter(user=user).values_list("from_status", "to_status")
        ),
    }


def _run(place: Place, user: User) -> tuple[str, Any]:
    try:
        order = place(user_id=user.pk)
    except services.OutOfStock as refusal:
        return ("409", refusal.code, refusal.message, refusal.details)
    except services.CartEmpty as refusal:
        return ("409", refusal.code, refusal.message, refusal.details)
    return ("201", order_representation(order))


def _comparable(outcome: tuple[Any, ...], user: User, products: list[Product]) -> Any:
    """The outcome with ids and times replaced by what they stand for."""
    position = {product.pk: index for index, product in enumerate(products)}
    if outcome[0] == "409":
        status, code, message, details = outcome
        short = [
            {**entry, "product": position[entry["product"]]}
            for entry in details.get("products", [])
        ]
        return (status, code, message, short)
    body = dict(outcome[1])
    assert body["user"] == user.pk
    assert body["created_at"] <= body["updated_at"]
    for key in ("id", "user", "created_at", "updated_at"):
        body.pop(key)
    body["items"] = [
        {**{k: v for k, v in item.items() if k != "id"}, "product": position[item["product"]]}
        for item in body["items"]
    ]
    return ("201", body)


def _both(
    prices_and_stock: list[tuple[str, int]],
    lines: list[tuple[int, int]],
    settings: Any,
    threshold: int = 5,
) -> dict[str, tuple[Any, dict[str, Any]]]:
    settings.EMPORIUM_LOW_STOCK_THRESHOLD = threshold
    results = {}
    for name, place in PATHS.items():
        user, products = _world(prices_and_stock)
        cart_fill(user, [(products[index], quantity) for index, quantity in lines])
        outcome = _run(place, user)
        results[name] = (_comparable(outcome, user, products), _written(user, products))
    return results


@on_postgresql
@pytest.mark.parametrize(
    ("prices_and_stock", "lines"),
    [
        ([("19.99", 10)], [(0, 1)]),
        ([("0.10", 3), ("1234.56", 50), ("7.05", 6)], [(2, 2), (0, 3), (1, 1)]),
        ([("5.00", 6), ("5.00", 7)], [(0, 1), (1, 2)]),  # both cross the low-stock line
    ],
)
def test_a_placed_order_is_the_same_on_both_paths(
    prices_and_stock: list[tuple[str, int]], lines: list[tuple[int, int]], settings: Any
) -> None:
    results = _both(prices_and_stock, lines, settings)

    assert results["sql"] == results["orm"]
    outcome, written = results["sql"]
    assert outcome[0] == "201"
    assert written["cart"] == []
    assert written["order_events"] == [("", "pending_payment")]


@on_postgresql
def test_a_shortage_is_refused_alike_and_writes_nothing(settings: Any) -> None:
    results = _both([("3.00", 5), ("4.00", 1), ("5.00", 0)], [(0, 2), (1, 2), (2, 1)], settings)

    assert results["sql"] == results["orm"]
    (status, code, _, short), written = results["sql"]
    assert (status, code) == ("409", "insufficient_stock")
    assert short == [
        {"product": 1, "requested": 2, "name": "Lamp 1", "available": 1},
        {"product": 2, "requested": 1, "name": "Lamp 2", "available": 0},
    ]
    assert written["orders"] == []
    assert written["events"] == []
    assert written["stock"] == [5, 1, 0]
    assert written["cart"] == [(0, 2), (1, 2), (2, 1)]


@on_postgresql
def test_an_empty_cart_is_refused_alike(settings: Any) -> None:
    results = _both([("3.00", 5)], [], settings)

    assert results["sql"] == results["orm"]
    assert results["sql"][0][:2] == ("409", "cart_empty")


@on_postgresql
@pytest.mark.parametrize("place", PATHS.values(), ids=PATHS.keys())
def test_an_inactive_user_cannot_check_out(place: Place) -> None:
    user, products = _world([("3.00", 5)])
    cart_fill(user, [(products[0], 1)])
    User.objects.filter(pk=user.pk).update(is_active=False)

    with pytest.raises(services.InactiveUser):
        place(user_id=user.pk)

    assert Product.objects.get(pk=products[0].pk).stock_quantity == 5
    assert not Order.objects.filter(user=user).exists()


def test_the_lean_representation_is_the_serializer_output() -> None:
    user, products = _world([("0.10", 9), ("1234.56", 9), ("7.05", 9)])
    cart_fill(user, [(products[0], 3), (products[1], 1), (products[2], 2)])

    placed = services.order_place(user_id=user.pk)
    reread = Order.objects.prefetch_related("items").get(pk=placed.pk)

    assert order_representation(placed) == OrderSerializer(reread).data
    assert order_representation(reread) == OrderSerializer(reread).data
