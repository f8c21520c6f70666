"""One customer can neither see nor change another's carts, wishlists, orders,
payments or reviews, and cannot even tell that the other's rows exist: every
probe answers exactly like a request for an id that was never issued."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.carts.models import CartItem, ShoppingCart
from emporium.catalog.models import Product
from emporium.core.tests.factories import (
    OrderFactory,
    OrderItemFactory,
    PaymentFactory,
    ProductFactory,
    UserFactory,
    client_for,
    make_review,
)
from emporium.orders.models import Order, OrderItem
from emporium.payments.models import Payment
from emporium.reviews.models import Review
from emporium.wishlists.models import Wishlist, WishlistItem

pytestmark = pytest.mark.django_db

MISSING_ID = 999999
NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "details": {}}}


@dataclass
class FirstCustomer:
    user: User
    product: Product
    cart_item: CartItem
    wishlist_item: WishlistItem
    order: Order
    payment: Payment
    review: Review


@pytest.fixture
def first() -> FirstCustomer:
    user = UserFactory()
    product = ProductFactory(stock_quantity=50)
    cart_item = CartItem.objects.create(
        cart=ShoppingCart.objects.create(user=user), product=product, quantity=2
    )
    wishlist_item = WishlistItem.objects.create(
        wishlist=Wishlist.objects.create(user=user), product=product
    )
    order = OrderFactory(user=user)
    OrderItemFactory(order=order, product=product)
    payment = PaymentFactory(order=order)
    review = make_review(product=product, user=user, rating=5, comment="mine")
    return FirstCustomer(user, product, cart_item, wishlist_item, order, payment, review)


@pytest.fixture
def second_client() -> APIClient:
    return client_for(UserFactory())


def database_state() -> dict[str, list[tuple[Any, ...]]]:
    """Every row the probes could touch, with the columns a write would change."""
    return {
        "carts": list(ShoppingCart.objects.order_by("id").values_list("id", "user_id")),
        "cart_items": list(
            CartItem.objects.order_by("id").values_list(
                "id", "cart_id", "product_id", "quantity", "updated_at"
            )
        ),
        "wishlists": list(Wishlist.objects.order_by("id").values_list("id", "user_id")),
        "wishlist_items": list(
            WishlistItem.objects.order_by("id").values_list("id", "wishlist_id", "product_id")
        ),
        "orders": list(
            Order.objects.order_by("id").values_list(
                "id", "user_id", "order_status", "total_amount", "updated_at"
            )
        ),
        "order_items": list(
            OrderItem.objects.order_by("id").values_list("id", "order_id", "quantity", "price")
        ),
        "payments": list(
            Payment.objects.order_by("id").values_list("id", "order_id", "status", "amount")
        ),
        "reviews": list(
            Review.objects.order_by("id").values_list("id", "user_id", "rating", "comment")
        ),
        "products": list(
            Product.objects.order_by("id").values_list(
                "id", "stock_quantity", "review_count", "rating_total"
            )
        ),
    }


# (method, route as a function of the first customer's data and an id, body)
PROBES: list[tuple[str, str, dict[str, Any]]] = [
    ("get", "/api/cart/items/{cart_item}/", {}),
    ("patch", "/api/cart/items/{cart_item}/", {"quantity": 1}),
    ("delete", "/api/cart/items/{cart_item}/", {}),
    ("get", "/api/wishlist/items/{wishlist_item}/", {}),
    ("delete", "/api/wishlist/items/{wishlist_item}/", {}),
    ("get", "/api/orders/{order}/", {}),
    ("get", "/api/payments/{payment}/", {}),
    ("patch", "/api/products/{product}/reviews/{review}/", {"rating": 1, "comment": "hacked"}),
    ("delete", "/api/products/{product}/reviews/{review}/", {}),
]


def probe_url(template: str, first: FirstCustomer, *, target_id: int) -> str:
    """The route with the probed resource's id set to ``target_id``; the product stays real."""
    ids = {
        "cart_item": target_id,
        "wishlist_item": target_id,
        "order": target_id,
        "payment": target_id,
        "review": target_id,
        "product": first.product.pk,
    }
    return template.format(**ids)


def real_id(template: str, first: FirstCustomer) -> int:
    for name in ("cart_item", "wishlist_item", "order", "payment", "review"):
        if "{" + name + "}" in template:
            return getattr(first, name).pk
    raise AssertionError(template)


@pytest.mark.parametrize(("method", "template", "body"), PROBES)
def test_probing_another_customers_id_looks_exactly_like_a_missing_id(
    first: FirstCustomer,
    second_client: APIClient,
    method: str,
    template: str,
    body: dict[str, Any],
) -> None:
    before = database_state()

    probe = getattr(second_client, method)(
        probe_url(template, first, target_id=real_id(template, first)), body, format="json"
    )
    missing = getattr(second_client, method)(
        probe_url(template, first, target_id=MISSING_ID), body, format="json"
    )

    assert probe.status_code == 404
    assert missing.status_code == 404
    assert probe.content == missing.content
    assert probe.json() == NOT_FOUND
    assert probe["Content-Type"] == missing["Content-Type"]
    assert database_state() == before


@pytest.mark.parametrize(
    ("method", "template", "body"),
    [
        ("patch", "/api/cart/items/{cart_item}/", {"quantity": 0}),
        ("patch", "/api/cart/items/{cart_item}/", {"quantity": 10_000_000}),
        ("patch", "/api/products/{product}/reviews/{review}/", {"rating": 99}),
    ],
)
def test_an_invalid_body_does_not_reveal_the_row_either(
    first: FirstCustomer,
    second_client: APIClient,
    method: str,
    template: str,
    body: dict[str, Any],
) -> None:
    before = database_state()

    probe = getattr(second_client, method)(
        probe_url(template, first, target_id=real_id(template, first)), body, format="json"
    )
    missing = getattr(second_client, method)(
        probe_url(template, first, target_id=MISSING_ID), body, format="json"
    )

    assert (probe.status_code, probe.content) == (missing.status_code, missing.content)
    assert database_state() == before


def test_the_owner_can_reach_every_probed_route(first: FirstCustomer) -> None:
    """The probes above hit real rows: their owner gets them."""
    owner = client_for(first.user)

    for method, template, _ in PROBES:
        if method != "get":
            continue
        url = probe_url(template, first, target_id=real_id(template, first))
        assert owner.get(url).status_code == 200, url


def test_cart_and_wishlist_show_only_the_callers_own_items(
    first: FirstCustomer, second_client: APIClient
) -> None:
    own_product = ProductFactory()
    second_client.post("/api/cart/items/", {"product": own_product.pk}, format="json")
    second_client.post("/api/wishlist/items/", {"product": own_product.pk}, format="json")

    cart = second_client.get("/api/cart/").json()
    cart_items = second_client.get("/api/cart/items/").json()
    wishlist = second_client.get("/api/wishlist/").json()
    wishlist_items = second_client.get("/api/wishlist/items/").json()

    assert [item["product"]["id"] for item in cart["items"]] == [own_product.pk]
    assert cart["item_count"] == 1
    assert cart["subtotal"] == "10.00"
    assert cart["id"] != first.cart_item.cart_id
    assert [item["product"]["id"] for item in cart_items] == [own_product.pk]
    assert [item["product"]["id"] for item in wishlist["items"]] == [own_product.pk]
    assert wishlist["id"] != first.wishlist_item.wishlist_id
    assert [item["product"]["id"] for item in wishlist_items] == [own_product.pk]
    # The first customer's lines are untouched and still only theirs.
    owner_cart = client_for(first.user).get("/api/cart/").json()
    assert [(item["id"], item["quantity"]) for item in owner_cart["items"]] == [
        (first.cart_item.pk, 2)
    ]


def test_emptying_ones_cart_leaves_the_other_cart_alone(
    first: FirstCustomer, second_client: APIClient
) -> None:
    assert second_client.delete("/api/cart/").status_code == 204

    assert list(CartItem.objects.values_list("pk", "quantity")) == [(first.cart_item.pk, 2)]


def test_order_and_payment_lists_show_only_the_callers_own(
    first: FirstCustomer, second_client: APIClient
) -> None:
    assert second_client.get("/api/orders/").json()["results"] == []
    assert second_client.get("/api/payments/").json()["results"] == []
