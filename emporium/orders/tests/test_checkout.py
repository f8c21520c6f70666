"""Checkout: POST /api/orders/ turns the caller's cart into a pending order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.carts.models import CartItem, ShoppingCart
from emporium.catalog.models import Product
from emporium.core.tests.factories import ProductFactory, UserFactory, client_for
from emporium.integrations import events
from emporium.orders.models import Order, OrderItem, OrderStatusChange
from emporium.orders.tests.support import (
    ORDERS_URL,
    cart_fill,
    cart_lines,
    database_state,
    error_of,
    order_url,
    outbox,
    stock_of,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _low_stock_threshold(settings: Any) -> None:
    settings.EMPORIUM_LOW_STOCK_THRESHOLD = 5


@pytest.fixture
def customer() -> User:
    return UserFactory()


@pytest.fixture
def client(customer: User) -> APIClient:
    return client_for(customer)


def test_checkout_places_a_pending_order_with_an_exact_decimal_total(
    customer: User, client: APIClient
) -> None:
    pen = ProductFactory(name="Pen", price=Decimal("19.99"), stock_quantity=40)
    clip = ProductFactory(name="Clip", price=Decimal("0.10"), stock_quantity=100)
    cart_fill(customer, [(clip, 1), (pen, 3)])
    neighbour = UserFactory()
    cart_fill(neighbour, [(pen, 2)])

    response = client.post(ORDERS_URL)

    assert response.status_code == 201
    order = Order.objects.get()
    pen_item, clip_item = OrderItem.objects.order_by("product_id")
    body = response.json()
    assert body == {
        "id": order.pk,
        "user": customer.pk,
        "order_status": "pending_payment",
        "total_amount": "60.07",  # 3 x 19.99 + 0.10; as floats this would be 60.07000000000001
        "shipping_address": None,
        "phone": None,
        "items": [
            {
                "id": pen_item.pk,
                "product": pen.pk,
                "product_name": "Pen",
                "quantity": 3,
                "price": "19.99",
                "line_total": "59.97",
            },
            {
                "id": clip_item.pk,
                "product": clip.pk,
                "product_name": "Clip",
                "quantity": 1,
                "price": "0.10",
                "line_total": "0.10",
            },
        ],
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert client.get(order_url(order.pk)).json() == body
    assert (order.user_id, order.order_status, order.total_amount) == (
        customer.pk,
        "pending_payment",
        Decimal("60.07"),
    )
    assert list(
        OrderItem.objects.order_by("product_id").values_list(
            "order_id", "product_id", "quantity", "price"
        )
    ) == [(order.pk, pen.pk, 3, Decimal("19.99")), (order.pk, clip.pk, 1, Decimal("0.10"))]
    assert (stock_of(pen), stock_of(clip)) == (37, 99)
    assert cart_lines(customer) == []
    assert cart_lines(neighbour) == [(pen.pk, 2)]  # someone else's cart is not touched
    assert not OrderStatusChange.objects.exists()  # placing is the start, not a transition


def test_checkout_records_order_placed_in_the_outbox(customer: User, client: APIClient) -> None:
    pen = ProductFactory(price=Decimal("19.99"), stock_quantity=40)
    clip = ProductFactory(price=Decimal("0.10"), stock_quantity=100)
    cart_fill(customer, [(clip, 1), (pen, 3)])

    order_id = client.post(ORDERS_URL).json()["id"]

    assert outbox() == [
        (
            "order.placed",
            "order",
            str(order_id),
            {
                "order_id": order_id,
                "user_id": customer.pk,
                "total_amount": "60.07",
                "items": [
                    {"product_id": pen.pk, "quantity": 3, "price": "19.99"},
                    {"product_id": clip.pk, "quantity": 1, "price": "0.10"},
                ],
            },
        )
    ]


@pytest.mark.parametrize(
    ("stock", "quantity", "crosses"),
    [
        (7, 2, True),  # 7 -> 5: reaches the threshold
        (6, 1, True),  # 6 -> 5
        (10, 10, True),  # 10 -> 0: jumps over it
        (7, 1, False),  # 7 -> 6: still above
        (5, 1, False),  # 5 -> 4: was already low, said so before
        (3, 3, False),  # 3 -> 0: likewise
    ],
)
def test_stock_low_is_recorded_once_when_stock_crosses_the_threshold(
    customer: User, client: APIClient, stock: int, quantity: int, crosses: bool
) -> None:
    product = ProductFactory(stock_quantity=stock)
    steady = ProductFactory(stock_quantity=100)
    cart_fill(customer, [(product, quantity), (steady, 1)])

    response = client.post(ORDERS_URL)

    assert response.status_code == 201
    expected = [
        (
            "stock.low",
            "product",
            str(product.pk),
            {"product_id": product.pk, "stock_quantity": stock - quantity},
        )
    ]
    assert outbox("stock.low") == (expected if crosses else [])
    assert len(outbox("order.placed")) == 1


def test_threshold_comes_from_settings(customer: User, client: APIClient, settings: Any) -> None:
    settings.EMPORIUM_LOW_STOCK_THRESHOLD = 50
    product = ProductFactory(stock_quantity=51)
    cart_fill(customer, [(product, 1)])

    client.post(ORDERS_URL)

    assert [row[2] for row in outbox("stock.low")] == [str(product.pk)]


def _fail_stock_low_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes recording the stock.low event fail, on whichever path checkout takes.

    PostgreSQL checks out inside ``emporium_order_place``, so there a trigger
    refuses the row; elsewhere the Python recorder is replaced.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION pg_temp.refuse_stock_low() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN IF NEW.event_type = 'stock.low' THEN "
                "RAISE EXCEPTION 'the database went away'; END IF; RETURN NEW; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_stock_low BEFORE INSERT ON integrations_outboxevent "
                "FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_stock_low()"
            )
        return
    record = events.event_record

    def record_or_fail(**kwargs: Any) -> Any:
        if kwargs["event_type"] == events.STOCK_LOW:
            raise RuntimeError("the database went away")
        return record(**kwargs)

    monkeypatch.setattr(events, "event_record", record_or_fail)


def test_events_are_written_in_the_checkout_transaction(
    customer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If recording the last event fails, the order and the events before it are gone too."""
    product = ProductFactory(stock_quantity=6)
    cart_fill(customer, [(product, 1)])
    _fail_stock_low_writes(monkeypatch)
    client = client_for(customer)
    client.raise_request_exception = False
    before = database_state()

    response = client.post(ORDERS_URL)

    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"
    assert database_state() == before  # order.placed was written before, then undone
    assert stock_of(product) == 6
    assert CartItem.objects.filter(cart__user=customer).count() == 1


def test_prices_are_captured_when_the_order_is_placed(customer: User, client: APIClient) -> None:
    product = ProductFactory(price=Decimal("10.00"), stock_quantity=10)
    cart_fill(customer, [(product, 2)])
    # The cart holds no price: checkout takes the price of the moment.
    Product.objects.filter(pk=product.pk).update(price=Decimal("12.35"))

    placed = client.post(ORDERS_URL)
    Product.objects.filter(pk=product.pk).update(price=Decimal("99.00"))
    later = client.get(order_url(placed.json()["id"]))

    assert placed.status_code == 201
    assert placed.json()["total_amount"] == "24.70"
    assert [(item["price"], item["line_total"]) for item in placed.json()["items"]] == [
        ("12.35", "24.70")
    ]
    assert later.json() == placed.json()
    assert OrderItem.objects.get().price == Decimal("12.35")
    assert Order.objects.get().total_amount == Decimal("24.70")


def test_many_small_amounts_add_up_exactly(customer: User, client: APIClient) -> None:
    products = [ProductFactory(price=Decimal("0.10"), stock_quantity=10) for _ in range(3)]
    products.append(ProductFactory(price=Decimal("0.20"), stock_quantity=10))
    cart_fill(customer, [(product, 1) for product in products])

    response = client.post(ORDERS_URL)

    assert response.json()["total_amount"] == "0.50"  # 0.1 + 0.1 + 0.1 + 0.2 != 0.5 in floats
    assert Order.objects.get().total_amount == Decimal("0.50")


def test_second_checkout_finds_the_cart_empty(customer: User, client: APIClient) -> None:
    cart_fill(customer, [(ProductFactory(stock_quantity=10), 1)])

    first = client.post(ORDERS_URL)
    second = client.post(ORDERS_URL)

    assert first.status_code == 201
    assert second.status_code == 409
    assert error_of(second)["code"] == "cart_empty"
    assert Order.objects.count() == 1


@pytest.mark.parametrize("has_cart", [False, True])
def test_empty_cart_is_a_conflict_and_writes_nothing(
    customer: User, client: APIClient, has_cart: bool
) -> None:
    if has_cart:
        ShoppingCart.objects.create(user=customer)
    ProductFactory(stock_quantity=3)
    before = database_state()

    response = client.post(ORDERS_URL)

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "cart_empty",
            "message": "The cart is empty; add products before checking out.",
            "details": {},
        }
    }
    assert database_state() == before


def test_insufficient_stock_names_each_short_product_and_writes_nothing(
    customer: User, client: APIClient
) -> None:
    # Ids in this order: the first line is taken (and must be put back) before
    # the shortages are found; the last comes after them.
    plenty = ProductFactory(name="Plenty", stock_quantity=10)
    scarce = ProductFactory(name="Scarce", stock_quantity=5)
    gone = ProductFactory(name="Gone", stock_quantity=5)
    later = ProductFactory(name="Later", stock_quantity=10)
    cart_fill(customer, [(later, 1), (gone, 1), (scarce, 3), (plenty, 2)])
    # Others bought while the items sat in the cart.
    Product.objects.filter(pk=scarce.pk).update(stock_quantity=2)
    Product.objects.filter(pk=gone.pk).update(stock_quantity=0)
    before = database_state()

    response = client.post(ORDERS_URL)

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "insufficient_stock",
            "message": "Not enough stock for: Scarce, Gone.",
            "details": {
                "products": [
                    {"product": scarce.pk, "name": "Scarce", "requested": 3, "available": 2},
                    {"product": gone.pk, "name": "Gone", "requested": 1, "available": 0},
                ]
            },
        }
    }
    assert database_state() == before
    assert [stock_of(product) for product in (plenty, scarce, gone, later)] == [10, 2, 0, 10]
    assert cart_lines(customer) == sorted(
        [(later.pk, 1), (gone.pk, 1), (scarce.pk, 3), (plenty.pk, 2)]
    )
    assert outbox() == []


def test_exactly_the_stock_left_is_enough(customer: User, client: APIClient) -> None:
    product = ProductFactory(stock_quantity=3)
    cart_fill(customer, [(product, 3)])

    response = client.post(ORDERS_URL)

    assert response.status_code == 201
    assert stock_of(product) == 0


def test_anonymous_checkout_is_unauthorised_and_writes_nothing(customer: User) -> None:
    cart_fill(customer, [(ProductFactory(stock_quantity=10), 1)])
    before = database_state()

    response = APIClient().post(ORDERS_URL)

    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"
    assert database_state() == before
    assert CartItem.objects.count() == 1


def test_names_are_captured_when_the_order_is_placed(customer: User, client: APIClient) -> None:
    product = ProductFactory(name="Kettle", stock_quantity=10)
    cart_fill(customer, [(product, 1)])

    placed = client.post(ORDERS_URL)
    Product.objects.filter(pk=product.pk).update(name="Kettle (new model)")
    later = client.get(order_url(placed.json()["id"]))

    assert [item["product_name"] for item in placed.json()["items"]] == ["Kettle"]
    assert later.json() == placed.json()


def test_checkout_costs_a_fixed_number_of_queries(
    customer: User, django_assert_num_queries: Any
) -> None:
    cart_fill(customer, [(ProductFactory(stock_quantity=5), 1) for _ in range(3)])
    client = client_for(customer)  # a Bearer token: the lean checkout path
    assert client.get("/api/auth/me/").status_code == 200  # the account's state, now kept

    # PostgreSQL: emporium_order_place() does it all, the realtime order event included,
    # and the test's transaction turns its implicit one into a savepoint pair. Elsewhere:
    # user, cart lock, cart lines, one stock UPDATE per product (3), order, items, cart
    # delete, outbox event, realtime order event, and the savepoint pair.
    expected = 3 if connection.vendor == "postgresql" else 13
    with django_assert_num_queries(expected) as captured:
        response = client.post(ORDERS_URL)

    assert response.status_code == 201
    statements = [query["sql"] for query in captured.captured_queries]
    # No re-read of what was just written.
    assert not any(
        sql.startswith("SELECT") and "orders_order" in sql.split("WHERE")[0] for sql in statements
    )
    if connection.vendor != "postgresql":
        assert sum(sql.startswith("UPDATE") for sql in statements) == 3
