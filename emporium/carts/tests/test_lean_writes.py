"""Adding to the cart and changing a quantity in one statement (``carts.lean``).

Each answer must be what ``CartItemSerializer`` writes for the line as stored,
and each refusal DRF's (the lean path hands those over). The stock rule holds
under racing adds. (``test_api.py`` runs every other cart case through the same
path: its requests carry tokens.)
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections

from emporium.carts.models import CartItem, ShoppingCart
from emporium.carts.serializers import CartItemSerializer
from emporium.core.tests.factories import ProductFactory, UserFactory, client_for

pytestmark = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the lean cart writes are PostgreSQL's"
)

ITEMS_URL = "/api/cart/items/"


def _stored(item_id: int) -> dict[str, Any]:
    return dict(CartItemSerializer(CartItem.objects.select_related("product").get(pk=item_id)).data)


@pytest.mark.django_db
def test_an_add_and_a_quantity_change_answer_as_the_serializer_writes_the_stored_line(
    django_assert_num_queries: Any,
) -> None:
    customer = UserFactory()
    ShoppingCart.objects.create(user=customer)
    product = ProductFactory(stock_quantity=10, name='Lamp "ü"')
    client = client_for(customer)
    assert client.get("/api/cart/").status_code == 200  # the account's state, now kept

    with django_assert_num_queries(1):
        added = client.post(ITEMS_URL, {"product": product.pk, "quantity": 2}, format="json")
    merged = client.post(ITEMS_URL, {"product": product.pk}, format="json")
    changed = client.patch(f"{ITEMS_URL}{added.json()['id']}/", {"quantity": 7}, format="json")

    assert added.status_code == 201
    assert added.json()["quantity"] == 2
    assert merged.status_code == 201
    assert merged.json()["quantity"] == 3
    assert merged.json()["id"] == added.json()["id"]
    assert changed.status_code == 200
    assert changed.json() == _stored(added.json()["id"])
    assert changed.json()["quantity"] == 7
    assert changed.json()["line_total"] == str(product.price * 7)


@pytest.mark.django_db
def test_refusals_are_drfs_and_write_nothing() -> None:
    customer, other = UserFactory(), UserFactory()
    ShoppingCart.objects.create(user=customer)
    product = ProductFactory(stock_quantity=3)
    client = client_for(customer)
    others_line = CartItem.objects.create(
        cart=ShoppingCart.objects.create(user=other), product=product, quantity=1
    )

    too_many = client.post(ITEMS_URL, {"product": product.pk, "quantity": 4}, format="json")
    missing = client.post(ITEMS_URL, {"product": 2**40, "quantity": 1}, format="json")
    past_bigint = client.post(ITEMS_URL, {"product": 2**70}, format="json")
    a_flag = client.post(ITEMS_URL, {"product": product.pk, "quantity": True}, format="json")
    not_mine = client.patch(f"{ITEMS_URL}{others_line.pk}/", {"quantity": 2}, format="json")

    assert too_many.status_code == 409
    assert too_many.json()["error"]["code"] == "insufficient_stock"
    assert missing.status_code == 400
    assert past_bigint.status_code == 400
    assert a_flag.status_code == 400
    assert not_mine.status_code == 404
    assert not CartItem.objects.filter(cart__user=customer).exists()
    assert CartItem.objects.get(pk=others_line.pk).quantity == 1


@pytest.mark.django_db(transaction=True)
def test_racing_adds_never_put_more_in_a_cart_than_the_stock() -> None:
    customer = UserFactory()
    ShoppingCart.objects.create(user=customer)
    product = ProductFactory(stock_quantity=5)
    token_client = client_for(customer)
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def add() -> None:
        try:
            barrier.wait(timeout=10)
            response = token_client.post(ITEMS_URL, {"product": product.pk}, format="json")
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=add) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses) == [201] * 5 + [409] * 3
    assert CartItem.objects.get(cart__user=customer).quantity == 5
    assert connection.vendor == "postgresql"
