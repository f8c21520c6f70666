"""Contract and permission tests of /api/wishlist/ and /api/wishlist/items/."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from rest_framework.fields import DateTimeField
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.catalog.models import Product
from emporium.core.tests.factories import ProductFactory, UserFactory, client_for
from emporium.wishlists import services
from emporium.wishlists.models import Wishlist, WishlistItem

pytestmark = pytest.mark.django_db

WISHLIST_URL = "/api/wishlist/"
ITEMS_URL = "/api/wishlist/items/"
NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "details": {}}}


def item_url(item_id: int) -> str:
    return f"/api/wishlist/items/{item_id}/"


def item_body(item: WishlistItem) -> dict[str, Any]:
    product = item.product
    return {
        "id": item.pk,
        "product": {
            "id": product.pk,
            "sku": product.sku,
            "name": product.name,
            "price": f"{product.price:.2f}",
            "stock_quantity": product.stock_quantity,
        },
        "created_at": DateTimeField().to_representation(item.created_at),
    }


def wishlist_product_ids(user: User) -> list[int]:
    return list(
        WishlistItem.objects.filter(wishlist__user=user)
        .order_by("id")
        .values_list("product_id", flat=True)
    )


def add_to_wishlist(user: User, product: Product) -> WishlistItem:
    item, _ = services.wishlist_item_add(user=user, product=product)
    return item


@pytest.fixture
def customer() -> User:
    return UserFactory()


@pytest.fixture
def client(customer: User) -> APIClient:
    return client_for(customer)


def test_get_wishlist_creates_it_on_first_use(customer: User, client: APIClient) -> None:
    response = client.get(WISHLIST_URL)
    again = client.get(WISHLIST_URL)

    assert response.status_code == again.status_code == 200
    wishlist = Wishlist.objects.get(user=customer)
    assert response.json() == {
        "id": wishlist.pk,
        "items": [],
        "created_at": DateTimeField().to_representation(wishlist.created_at),
        "updated_at": DateTimeField().to_representation(wishlist.updated_at),
    }
    assert again.json()["id"] == wishlist.pk
    assert Wishlist.objects.count() == 1


def test_get_wishlist_lists_items_newest_first(customer: User, client: APIClient) -> None:
    older = add_to_wishlist(customer, ProductFactory())
    newer = add_to_wishlist(customer, ProductFactory())
    WishlistItem.objects.filter(pk=older.pk).update(
        created_at=newer.created_at - datetime.timedelta(minutes=1)
    )
    older.refresh_from_db()

    response = client.get(WISHLIST_URL)
    items_response = client.get(ITEMS_URL)

    assert response.status_code == 200
    assert response.json()["items"] == [item_body(newer), item_body(older)]
    assert items_response.status_code == 200
    assert items_response.json() == [item_body(newer), item_body(older)]


def test_add_item_creates_it(customer: User, client: APIClient) -> None:
    product = ProductFactory()

    response = client.post(ITEMS_URL, {"product": product.pk}, format="json")

    assert response.status_code == 201
    item = WishlistItem.objects.get()
    assert response.json() == item_body(item)
    assert wishlist_product_ids(customer) == [product.pk]


def test_add_item_again_returns_the_same_item_with_200(customer: User, client: APIClient) -> None:
    product = ProductFactory()
    first = client.post(ITEMS_URL, {"product": product.pk}, format="json")

    second = client.post(ITEMS_URL, {"product": product.pk}, format="json")

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == first.json()
    assert WishlistItem.objects.count() == 1
    assert wishlist_product_ids(customer) == [product.pk]


def test_out_of_stock_product_can_be_wished_for(customer: User, client: APIClient) -> None:
    product = ProductFactory(stock_quantity=0)

    response = client.post(ITEMS_URL, {"product": product.pk}, format="json")

    assert response.status_code == 201
    assert wishlist_product_ids(customer) == [product.pk]


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        ({"product": 999999}, {"product": ['Invalid pk "999999" - object does not exist.']}),
        ({}, {"product": ["This field is required."]}),
        ({"product": None}, {"product": ["This field may not be null."]}),
    ],
)
def test_add_invalid_product_is_rejected(
    client: APIClient, payload: dict[str, Any], details: dict[str, Any]
) -> None:
    response = client.post(ITEMS_URL, payload, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": "The request contains invalid data.",
            "details": details,
        }
    }
    assert WishlistItem.objects.count() == 0


def test_get_item_detail(customer: User, client: APIClient) -> None:
    item = add_to_wishlist(customer, ProductFactory())

    response = client.get(item_url(item.pk))

    assert response.status_code == 200
    assert response.json() == item_body(item)


def test_delete_item(customer: User, client: APIClient) -> None:
    kept = ProductFactory()
    removed = add_to_wishlist(customer, ProductFactory())
    add_to_wishlist(customer, kept)

    response = client.delete(item_url(removed.pk))

    assert response.status_code == 204
    assert response.content == b""
    assert wishlist_product_ids(customer) == [kept.pk]
    assert client.delete(item_url(removed.pk)).json() == NOT_FOUND


def test_delete_unknown_item_is_not_found(client: APIClient) -> None:
    response = client.delete(item_url(999999))

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", WISHLIST_URL),
        ("get", ITEMS_URL),
        ("post", ITEMS_URL),
        ("get", "/api/wishlist/items/1/"),
        ("delete", "/api/wishlist/items/1/"),
    ],
)
def test_anonymous_is_unauthorised_and_nothing_is_written(method: str, url: str) -> None:
    owner = UserFactory()
    product = ProductFactory()
    item = add_to_wishlist(owner, product)
    url = url.replace("/1/", f"/{item.pk}/")

    response = getattr(APIClient(), method)(url, {"product": ProductFactory().pk}, format="json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert Wishlist.objects.count() == 1
    assert wishlist_product_ids(owner) == [product.pk]


@pytest.mark.parametrize(
    ("method", "url"),
    [("post", WISHLIST_URL), ("delete", WISHLIST_URL), ("patch", "/api/wishlist/items/1/")],
)
def test_unsupported_methods_are_not_allowed(
    customer: User, client: APIClient, method: str, url: str
) -> None:
    item = add_to_wishlist(customer, ProductFactory())
    url = url.replace("/1/", f"/{item.pk}/")

    response = getattr(client, method)(url, {"product": ProductFactory().pk}, format="json")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert WishlistItem.objects.count() == 1
