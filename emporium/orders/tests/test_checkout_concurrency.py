"""Checkout under real concurrency: many threads, each on its own PostgreSQL connection.

These tests need PostgreSQL (SQLite serialises every writer, so nothing would
race): they skip without DATABASE_URL, and fail when services are required.
Each buyer is a separate user with a separate client; the threads start
together at a barrier.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from conftest import require_service
from emporium.accounts.models import User
from emporium.catalog.models import Product
from emporium.core.idempotency import REPLAY_HEADER
from emporium.core.models import IdempotencyKey
from emporium.core.tests.factories import ProductFactory, UserFactory, client_for
from emporium.orders.models import Order, OrderItem
from emporium.orders.tests.support import ORDERS_URL, cart_fill, cart_lines, outbox, stock_of
from tests.support.concurrency import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql(settings: Any) -> None:
    require_service("DATABASE_URL")
    assert connection.vendor == "postgresql"
    settings.EMPORIUM_LOW_STOCK_THRESHOLD = 5


def _checkout(client: APIClient, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    response = client.post(ORDERS_URL, **headers)
    return response.status_code, response.content, dict(response.headers)


def _server_errors(results: list[tuple[int, bytes, dict[str, str]]]) -> list[bytes]:
    return [body for status, body, _ in results if status >= 500]


def test_200_buyers_for_50_units_make_exactly_50_orders() -> None:
    product = ProductFactory(name="Last units", price=Decimal("9.99"), stock_quantity=50)
    buyers = UserFactory.create_batch(200)
    for buyer in buyers:
        cart_fill(buyer, [(product, 1)])
    clients = [client_for(buyer) for buyer in buyers]

    results = run_concurrently(_checkout, clients, workers=40)

    assert _server_errors(results) == []
    assert Counter(status for status, _, _ in results) == {201: 50, 409: 150}
    refusal = {
        "error": {
            "code": "insufficient_stock",
            "message": "Not enough stock for: Last units.",
            "details": {
                "products": [
                    {"product": product.pk, "name": "Last units", "requested": 1, "available": 0}
                ]
            },
        }
    }

    assert all(json.loads(body) == refusal for status, body, _ in results if status == 409)
    assert stock_of(product) == 0
    assert Order.objects.count() == 50
    assert set(OrderItem.objects.values_list("product_id", "quantity", "price")) == {
        (product.pk, 1, Decimal("9.99"))
    }
    assert OrderItem.objects.count() == 50
    winners = {
        buyer.pk for buyer, (status, _, _) in zip(buyers, results, strict=True) if status == 201
    }
    assert set(Order.objects.values_list("user_id", flat=True)) == winners
    assert {json.loads(body)["id"] for status, body, _ in results if status == 201} == set(
        Order.objects.values_list("pk", flat=True)
    )
    for buyer in buyers:
        assert cart_lines(buyer) == ([] if buyer.pk in winners else [(product.pk, 1)])
    assert len(outbox("order.placed")) == 50
    # One decrement took the stock from 6 to 5: exactly one stock.low.
    assert len(outbox("stock.low")) == 1


def test_multi_product_carts_in_random_order_never_deadlock_or_oversell() -> None:
    chooser = random.Random(20240501)
    initial = dict.fromkeys(range(5), 20)
    products = [ProductFactory(stock_quantity=initial[index]) for index in range(5)]
    buyers = UserFactory.create_batch(60)
    wanted: dict[int, list[tuple[int, int]]] = {}
    for buyer in buyers:
        # Three different products, put in the cart in a random order, so
        # without a fixed lock order two carts would take rows in opposite orders.
        picked = chooser.sample(products, 3)
        lines = [(product, chooser.randint(1, 3)) for product in picked]
        cart_fill(buyer, lines)
        wanted[buyer.pk] = sorted((product.pk, quantity) for product, quantity in lines)
    clients = [client_for(buyer) for buyer in buyers]

    results = run_concurrently(_checkout, clients, workers=30)

    assert _server_errors(results) == []

    codes = Counter(
        (status, json.loads(body)["error"]["code"] if status != 201 else "")
        for status, body, _ in results
    )
    assert set(codes) <= {(201, ""), (409, "insufficient_stock")}, codes
    assert codes[(201, "")] > 0
    assert codes[(409, "insufficient_stock")] > 0
    for index, product in enumerate(products):
        ordered = sum(OrderItem.objects.filter(product=product).values_list("quantity", flat=True))
        left = stock_of(product)
        assert left >= 0
        assert ordered + left == initial[index], (product.pk, ordered, left)
    for buyer, (status, _, _) in zip(buyers, results, strict=True):
        orders = list(Order.objects.filter(user=buyer))
        if status == 201:
            (order,) = orders
            assert sorted(order.items.values_list("product_id", "quantity")) == wanted[buyer.pk]
            assert cart_lines(buyer) == []
        else:
            assert orders == []
            assert cart_lines(buyer) == wanted[buyer.pk]
    assert Product.objects.filter(stock_quantity__lt=0).count() == 0


def test_one_user_double_submitting_one_cart_gets_one_order() -> None:
    """Two checkouts of the same cart at once (no Idempotency-Key): one order, one 409."""
    product = ProductFactory(stock_quantity=100)
    buyer = UserFactory()
    cart_fill(buyer, [(product, 2)])
    clients = [client_for(buyer) for _ in range(8)]

    results = run_concurrently(_checkout, clients, workers=8)

    assert _server_errors(results) == []

    assert (
        sorted(
            (status, json.loads(body)["error"]["code"] if status != 201 else "")
            for status, body, _ in results
        )
        == [(201, "")] + [(409, "cart_empty")] * 7
    )
    assert Order.objects.count() == 1
    assert stock_of(product) == 98


def test_50_concurrent_requests_with_one_idempotency_key_make_one_order() -> None:
    product = ProductFactory(stock_quantity=10)
    buyer: User = UserFactory()
    cart_fill(buyer, [(product, 2)])
    key = "checkout-7f3c1e"
    clients = [client_for(buyer) for _ in range(50)]

    def checkout_with_key(client: APIClient) -> tuple[int, bytes, dict[str, str]]:
        return _checkout(client, HTTP_IDEMPOTENCY_KEY=key)

    # 25 connections at once is plenty of racing and leaves room on the shared server.
    results = run_concurrently(checkout_with_key, clients, workers=25)

    assert _server_errors(results) == []

    created = [body for status, body, _ in results if status == 201]
    refused = [json.loads(body) for status, body, _ in results if status != 201]
    assert len(created) + len(refused) == 50
    assert len(created) >= 1
    assert len(set(created)) == 1  # every 201 is the same bytes: the first or its replay
    assert all(
        status == 409 and json.loads(body)["error"]["code"] == "idempotency_in_progress"
        for status, body, _ in results
        if status != 201
    )
    originals = [headers for status, _, headers in results if status == 201]
    assert sum(REPLAY_HEADER not in headers for headers in originals) == 1
    assert Order.objects.count() == 1
    assert stock_of(product) == 8
    assert IdempotencyKey.objects.filter(user=buyer, key=key).count() == 1

    retry = client_for(buyer).post(ORDERS_URL, HTTP_IDEMPOTENCY_KEY=key)

    assert retry.status_code == 201
    assert retry.content == created[0]
    assert retry.headers[REPLAY_HEADER] == "true"
    assert json.loads(created[0])["id"] == Order.objects.get().pk
    assert Order.objects.count() == 1
    assert stock_of(product) == 8
