"""Contract and permission tests of /api/cart/ and /api/cart/items/."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.fields import DateTimeField
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.carts.models import CartItem, ShoppingCart
from emporium.catalog.models import Product
from emporium.core.tests.factories import ProductFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db

CART_URL = "/api/cart/"
ITEMS_URL = "/api/cart/items/"
NOT_AUTHENTICATED = {
    "error": {
        "code": "not_authenticated",
        "message": "Authentication credentials were not provided.",
        "details": {},
    }
}


def item_url(item_id: int) -> str:
    return f"/api/cart/items/{item_id}/"


def timestamp(value: Any) -> str:
    return DateTimeField().to_representation(value)


def product_summary(product: Product) -> dict[str, Any]:
    return {
        "id": product.pk,
        "sku": product.sku,
        "name": product.name,
        "price": f"{product.price:.2f}",
        "stock_quantity": product.stock_quantity,
    }


def item_body(item: CartItem) -> dict[str, Any]:
    item.refresh_from_db()
    return {
        "id": item.pk,
        "product": product_summary(item.product),
        "quantity": item.quantity,
        "line_total": f"{item.product.price * item.quantity:.2f}",
        "created_at": timestamp(item.created_at),
        "updated_at": timestamp(item.updated_at),
    }


def cart_rows(user: User) -> list[tuple[int, int]]:
    """(product id, quantity) of every line in the user's cart, in id order."""
    return list(
        CartItem.objects.filter(cart__user=user)
        .order_by("id")
        .values_list("product_id", "quantity")
    )


def put_in_cart(user: User, product: Product, quantity: int) -> CartItem:
    cart, _ = ShoppingCart.objects.get_or_create(user=user)
    return CartItem.objects.create(cart=cart, product=product, quantity=quantity)


@pytest.fixture
def customer() -> User:
    return UserFactory()


@pytest.fixture
def client(customer: User) -> APIClient:
    return client_for(customer)


# --- GET /api/cart/ ---------------------------------------------------------------


def test_get_cart_creates_an_empty_cart_on_first_use(customer: User, client: APIClient) -> None:
    assert not ShoppingCart.objects.filter(user=customer).exists()

    response = client.get(CART_URL)

    assert response.status_code == 200
    cart = ShoppingCart.objects.get(user=customer)
    assert response.json() == {
        "id": cart.pk,
        "items": [],
        "item_count": 0,
        "subtotal": "0.00",
        "created_at": timestamp(cart.created_at),
        "updated_at": timestamp(cart.updated_at),
    }


def test_get_cart_twice_keeps_one_cart_per_user(customer: User, client: APIClient) -> None:
    first = client.get(CART_URL)
    second = client.get(CART_URL)

    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert ShoppingCart.objects.filter(user=customer).count() == 1
    assert ShoppingCart.objects.count() == 1


def test_get_cart_shows_items_count_and_exact_subtotal(customer: User, client: APIClient) -> None:
    pen = ProductFactory(name="Pen", price=Decimal("19.99"), stock_quantity=10)
    clip = ProductFactory(name="Clip", price=Decimal("0.10"), stock_quantity=10)
    pen_line = put_in_cart(customer, pen, 3)
    clip_line = put_in_cart(customer, clip, 7)

    response = client.get(CART_URL)

    assert response.status_code == 200
    body = response.json()
    assert body["items"] == [item_body(pen_line), item_body(clip_line)]
    assert body["items"][0]["line_total"] == "59.97"
    assert body["items"][1]["line_total"] == "0.70"
    assert body["item_count"] == 10
    assert body["subtotal"] == "60.67"


def test_get_cart_items_lists_the_lines(customer: User, client: APIClient) -> None:
    first = put_in_cart(customer, ProductFactory(), 1)
    second = put_in_cart(customer, ProductFactory(), 2)

    response = client.get(ITEMS_URL)

    assert response.status_code == 200
    assert response.json() == [item_body(first), item_body(second)]


def test_get_cart_item_detail(customer: User, client: APIClient) -> None:
    line = put_in_cart(customer, ProductFactory(price=Decimal("2.50")), 4)

    response = client.get(item_url(line.pk))

    assert response.status_code == 200
    assert response.json() == item_body(line)
    assert response.json()["line_total"] == "10.00"


# --- POST /api/cart/items/ -------------------------------------------------------


def test_add_item_creates_a_line(customer: User, client: APIClient) -> None:
    product = ProductFactory(price=Decimal("12.34"), stock_quantity=5)

    response = client.post(ITEMS_URL, {"product": product.pk, "quantity": 2}, format="json")

    assert response.status_code == 201
    line = CartItem.objects.get(cart__user=customer)
    assert response.json() == item_body(line)
    assert response.json()["line_total"] == "24.68"
    assert cart_rows(customer) == [(product.pk, 2)]


def test_add_item_ignores_read_only_fields(customer: User, client: APIClient) -> None:
    product = ProductFactory(stock_quantity=5)

    response = client.post(
        ITEMS_URL,
        {"product": product.pk, "quantity": 2, "id": 424242, "line_total": "0.01"},
        format="json",
    )

    assert response.status_code == 201
    line = CartItem.objects.get()
    assert line.pk != 424242
    assert response.json() == item_body(line)
    assert response.json()["line_total"] == "20.00"


def test_add_item_without_quantity_adds_one(customer: User, client: APIClient) -> None:
    product = ProductFactory()

    response = client.post(ITEMS_URL, {"product": product.pk}, format="json")

    assert response.status_code == 201
    assert response.json()["quantity"] == 1
    assert cart_rows(customer) == [(product.pk, 1)]


def test_adding_the_same_product_again_merges_quantities(customer: User, client: APIClient) -> None:
    product = ProductFactory(stock_quantity=10)

    first = client.post(ITEMS_URL, {"product": product.pk, "quantity": 2}, format="json")
    second = client.post(ITEMS_URL, {"product": product.pk, "quantity": 3}, format="json")

    assert first.status_code == 201
    assert second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["quantity"] == 5
    assert second.json()["line_total"] == "50.00"
    assert cart_rows(customer) == [(product.pk, 5)]


def test_add_item_up_to_exactly_the_stock_is_allowed(customer: User, client: APIClient) -> None:
    product = ProductFactory(stock_quantity=4)

    response = client.post(ITEMS_URL, {"product": product.pk, "quantity": 4}, format="json")

    assert response.status_code == 201
    assert cart_rows(customer) == [(product.pk, 4)]


def test_add_more_than_stock_is_a_conflict_and_writes_nothing(
    customer: User, client: APIClient
) -> None:
    product = ProductFactory(name="Widget", stock_quantity=3)

    response = client.post(ITEMS_URL, {"product": product.pk, "quantity": 5}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "insufficient_stock",
            "message": "Only 3 of 'Widget' in stock; 5 requested.",
            "details": {"product": product.pk, "requested": 5, "available": 3},
        }
    }
    assert cart_rows(customer) == []
    assert CartItem.objects.count() == 0
    product.refresh_from_db()
    assert product.stock_quantity == 3


def test_merging_beyond_stock_is_a_conflict_and_keeps_the_line(
    customer: User, client: APIClient
) -> None:
    product = ProductFactory(name="Widget", stock_quantity=5)
    line = put_in_cart(customer, product, 3)
    before = item_body(line)

    response = client.post(ITEMS_URL, {"product": product.pk, "quantity": 3}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "insufficient_stock",
            "message": "Only 5 of 'Widget' in stock; 6 requested.",
            "details": {"product": product.pk, "requested": 6, "available": 5},
        }
    }
    assert cart_rows(customer) == [(product.pk, 3)]
    assert item_body(line) == before  # not even updated_at moved


def test_add_item_to_out_of_stock_product_is_a_conflict(customer: User, client: APIClient) -> None:
    product = ProductFactory(name="Gone", stock_quantity=0)

    response = client.post(ITEMS_URL, {"product": product.pk}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "insufficient_stock"
    assert response.json()["error"]["details"] == {
        "product": product.pk,
        "requested": 1,
        "available": 0,
    }
    assert CartItem.objects.count() == 0


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        (0, "Ensure this value is greater than or equal to 1."),
        (-1, "Ensure this value is greater than or equal to 1."),
        (1.5, "A valid integer is required."),
        ("two", "A valid integer is required."),
        (None, "This field may not be null."),
        (10_001, "Ensure this value is less than or equal to 10000."),
    ],
)
def test_add_item_with_invalid_quantity_is_rejected(
    customer: User, client: APIClient, quantity: Any, message: str
) -> None:
    product = ProductFactory()

    response = client.post(ITEMS_URL, {"product": product.pk, "quantity": quantity}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": "The request contains invalid data.",
            "details": {"quantity": [message]},
        }
    }
    assert CartItem.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        (
            {"product": 999999, "quantity": 1},
            {"product": ['Invalid pk "999999" - object does not exist.']},
        ),
        ({"quantity": 1}, {"product": ["This field is required."]}),
        ({"product": "abc"}, {"product": ["Incorrect type. Expected pk value, received str."]}),
    ],
)
def test_add_item_with_invalid_product_is_rejected(
    client: APIClient, payload: dict[str, Any], details: dict[str, Any]
) -> None:
    ProductFactory()

    response = client.post(ITEMS_URL, payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["details"] == details
    assert CartItem.objects.count() == 0


def test_add_item_with_malformed_json_is_rejected(client: APIClient) -> None:
    response = client.generic("POST", ITEMS_URL, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert CartItem.objects.count() == 0


# --- PATCH /api/cart/items/<id>/ -------------------------------------------------


def test_patch_sets_the_quantity(customer: User, client: APIClient) -> None:
    product = ProductFactory(price=Decimal("3.33"), stock_quantity=10)
    line = put_in_cart(customer, product, 1)

    response = client.patch(item_url(line.pk), {"quantity": 7}, format="json")

    assert response.status_code == 200
    assert response.json() == item_body(line)
    assert response.json()["quantity"] == 7
    assert response.json()["line_total"] == "23.31"
    assert cart_rows(customer) == [(product.pk, 7)]


def test_patch_ignores_read_only_fields(customer: User, client: APIClient) -> None:
    product = ProductFactory(stock_quantity=10)
    other_product = ProductFactory(stock_quantity=10)
    line = put_in_cart(customer, product, 1)

    response = client.patch(
        item_url(line.pk),
        {
            "id": line.pk + 1000,
            "product": other_product.pk,
            "quantity": 2,
            "line_total": "0.01",
            "created_at": "2000-01-01T00:00:00Z",
        },
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == line.pk
    assert body["product"]["id"] == product.pk
    assert body["line_total"] == "20.00"
    assert body["created_at"] == timestamp(line.created_at)
    assert cart_rows(customer) == [(product.pk, 2)]
    assert CartItem.objects.get().pk == line.pk


def test_patch_beyond_stock_is_a_conflict_and_leaves_the_line(
    customer: User, client: APIClient
) -> None:
    product = ProductFactory(name="Lamp", stock_quantity=4)
    line = put_in_cart(customer, product, 2)
    before = item_body(line)

    response = client.patch(item_url(line.pk), {"quantity": 5}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "insufficient_stock",
            "message": "Only 4 of 'Lamp' in stock; 5 requested.",
            "details": {"product": product.pk, "requested": 5, "available": 4},
        }
    }
    assert item_body(line) == before


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        ({"quantity": 0}, {"quantity": ["Ensure this value is greater than or equal to 1."]}),
        ({"quantity": -3}, {"quantity": ["Ensure this value is greater than or equal to 1."]}),
        ({"quantity": "x"}, {"quantity": ["A valid integer is required."]}),
        ({}, {"quantity": ["This field is required."]}),
    ],
)
def test_patch_with_invalid_quantity_is_rejected(
    customer: User, client: APIClient, payload: dict[str, Any], details: dict[str, Any]
) -> None:
    line = put_in_cart(customer, ProductFactory(), 2)
    before = item_body(line)

    response = client.patch(item_url(line.pk), payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["details"] == details
    assert item_body(line) == before


def test_patch_unknown_item_is_not_found(client: APIClient) -> None:
    response = client.patch(item_url(999999), {"quantity": 1}, format="json")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "Not found.", "details": {}}
    }


# --- DELETE ---------------------------------------------------------------------


def test_delete_item_removes_only_that_line(customer: User, client: APIClient) -> None:
    kept_product = ProductFactory()
    removed = put_in_cart(customer, ProductFactory(), 1)
    put_in_cart(customer, kept_product, 2)

    response = client.delete(item_url(removed.pk))

    assert response.status_code == 204
    assert response.content == b""
    assert cart_rows(customer) == [(kept_product.pk, 2)]
    assert client.delete(item_url(removed.pk)).status_code == 404


def test_delete_cart_empties_it_but_keeps_the_cart(customer: User, client: APIClient) -> None:
    put_in_cart(customer, ProductFactory(), 1)
    put_in_cart(customer, ProductFactory(), 2)
    cart = ShoppingCart.objects.get(user=customer)
    other = UserFactory()
    other_product = ProductFactory()
    put_in_cart(other, other_product, 3)

    response = client.delete(CART_URL)

    assert response.status_code == 204
    assert cart_rows(customer) == []
    assert ShoppingCart.objects.get(user=customer).pk == cart.pk
    assert cart_rows(other) == [(other_product.pk, 3)]
    body = client.get(CART_URL).json()
    assert (body["items"], body["item_count"], body["subtotal"]) == ([], 0, "0.00")


def test_delete_cart_on_first_use_is_fine(customer: User, client: APIClient) -> None:
    response = client.delete(CART_URL)

    assert response.status_code == 204
    assert ShoppingCart.objects.filter(user=customer).count() == 1


# --- Anonymous and unsupported --------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", CART_URL),
        ("delete", CART_URL),
        ("get", ITEMS_URL),
        ("post", ITEMS_URL),
        ("get", "/api/cart/items/1/"),
        ("patch", "/api/cart/items/1/"),
        ("delete", "/api/cart/items/1/"),
    ],
)
def test_anonymous_is_unauthorised_and_nothing_is_written(method: str, url: str) -> None:
    owner = UserFactory()
    product = ProductFactory()
    line = put_in_cart(owner, product, 1)
    url = url.replace("/1/", f"/{line.pk}/")

    response = getattr(APIClient(), method)(
        url, {"product": product.pk, "quantity": 2}, format="json"
    )

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert ShoppingCart.objects.count() == 1
    assert cart_rows(owner) == [(product.pk, 1)]


def test_invalid_token_is_unauthorised() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")

    response = client.get(CART_URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert ShoppingCart.objects.count() == 0


@pytest.mark.parametrize(
    ("method", "url"), [("post", CART_URL), ("put", CART_URL), ("put", ITEMS_URL)]
)
def test_unsupported_methods_are_not_allowed(
    customer: User, client: APIClient, method: str, url: str
) -> None:
    response = getattr(client, method)(url, {}, format="json")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert CartItem.objects.count() == 0


def test_cart_read_query_count_does_not_grow_with_items(
    customer: User, client: APIClient, django_assert_num_queries: Any
) -> None:
    client.get(CART_URL)  # the cart exists, so the read below writes nothing
    for _ in range(5):
        put_in_cart(customer, ProductFactory(), 1)

    # cart, items joined with their products (the token's user is the cached state)
    with django_assert_num_queries(2):
        response = client.get(CART_URL)

    assert response.status_code == 200
    assert response.json()["item_count"] == 5
