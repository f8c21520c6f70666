"""/api/products/: public reads, staff-only writes, validation and conflicts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient
from rest_framework.validators import UniqueValidator

from emporium.accounts.models import User
from emporium.catalog.models import Category, Product
from emporium.catalog.tests.support import (
    PRODUCT_LIST_URL,
    error_of,
    product_body,
    product_state,
    product_url,
)
from emporium.core.tests.factories import (
    CategoryFactory,
    OrderItemFactory,
    ProductFactory,
    StaffFactory,
    UserFactory,
    client_for,
    make_review,
)

pytestmark = pytest.mark.django_db

INVALID = "The request contains invalid data."


@pytest.fixture
def staff_client() -> APIClient:
    return client_for(StaffFactory())


@pytest.fixture
def customer() -> User:
    return UserFactory()


@pytest.fixture
def category() -> Category:
    return CategoryFactory(name="Lighting")


def _payload(for_category: Category, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "sku": "LAMP-001",
        "name": "Desk lamp",
        "description": "A lamp for a desk.",
        "price": "24.90",
        "stock_quantity": 7,
        "category": for_category.pk,
        "attributes": {"colour": "green", "watts": 9},
    }
    payload.update(overrides)
    return payload


# --- reads --------------------------------------------------------------------------------


def test_anyone_reads_a_product_in_full(api_client: APIClient) -> None:
    product = ProductFactory(price=Decimal("12.30"), stock_quantity=0, attributes={"size": "L"})
    make_review(product=product, user=UserFactory(), rating=3)
    make_review(product=product, user=UserFactory(), rating=4)

    response = api_client.get(product_url(product.pk))

    assert response.status_code == 200
    assert response.json() == product_body(product)
    assert response.json()["price"] == "12.30"
    assert response.json()["in_stock"] is False
    assert (response.json()["review_count"], response.json()["rating_average"]) == (2, "3.50")


def test_anyone_lists_products(api_client: APIClient) -> None:
    first = ProductFactory()
    second = ProductFactory(category=first.category)

    response = api_client.get(PRODUCT_LIST_URL)

    assert response.status_code == 200
    # newest first by default; rows are the same representation as the detail
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [product_body(second), product_body(first)],
    }


def test_a_missing_product_is_404(api_client: APIClient) -> None:
    response = api_client.get(product_url(999_999))

    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "Not found.", "details": {}}


# --- who may write ------------------------------------------------------------------------


def test_anonymous_and_customer_cannot_create(
    api_client: APIClient, customer: User, category: Category
) -> None:
    anonymous = api_client.post(PRODUCT_LIST_URL, _payload(category), format="json")
    as_customer = client_for(customer).post(PRODUCT_LIST_URL, _payload(category), format="json")

    assert anonymous.status_code == 401
    assert error_of(anonymous)["code"] == "not_authenticated"
    assert as_customer.status_code == 403
    assert error_of(as_customer)["code"] == "permission_denied"
    assert Product.objects.count() == 0


def test_anonymous_and_customer_cannot_update_or_delete(
    api_client: APIClient, customer: User
) -> None:
    product = ProductFactory()
    before = product_state()

    for client, status in ((api_client, 401), (client_for(customer), 403)):
        patched = client.patch(product_url(product.pk), {"price": "1.00"}, format="json")
        deleted = client.delete(product_url(product.pk))
        assert (patched.status_code, deleted.status_code) == (status, status)

    assert product_state() == before


# --- staff create -----------------------------------------------------------------------------


def test_staff_creates_a_product(staff_client: APIClient, category: Category) -> None:
    response = staff_client.post(PRODUCT_LIST_URL, _payload(category), format="json")

    assert response.status_code == 201
    product = Product.objects.get()
    assert response.json() == product_body(product)
    assert (
        product.sku,
        product.name,
        product.description,
        product.price,
        product.stock_quantity,
        product.category_id,
        product.attributes,
        product.review_count,
        product.rating_total,
    ) == (
        "LAMP-001",
        "Desk lamp",
        "A lamp for a desk.",
        Decimal("24.90"),
        7,
        category.pk,
        {"colour": "green", "watts": 9},
        0,
        0,
    )
    assert response.json()["category_name"] == "Lighting"


def test_read_only_fields_cannot_be_set_on_create(
    staff_client: APIClient, category: Category
) -> None:
    payload = _payload(
        category,
        id=777_777,
        review_count=40,
        rating_total=200,
        rating_average="5.00",
        in_stock=False,
        category_name="Forged",
        created_at="2001-01-01T00:00:00Z",
        updated_at="2001-01-01T00:00:00Z",
    )

    response = staff_client.post(PRODUCT_LIST_URL, payload, format="json")

    assert response.status_code == 201
    product = Product.objects.get()
    assert product.pk != 777_777
    assert (product.review_count, product.rating_total) == (0, 0)
    assert product.created_at.year != 2001
    body = response.json()
    assert (body["id"], body["review_count"], body["rating_average"], body["in_stock"]) == (
        product.pk,
        0,
        None,
        True,
    )
    assert body["category_name"] == "Lighting"


AT_LEAST_ZERO = "Ensure this value is greater than or equal to 0."
UNKNOWN_CATEGORY = 'Invalid pk "999999" - object does not exist.'


@pytest.mark.parametrize(
    ("overrides", "details"),
    [
        pytest.param(
            {"price": "-0.01"},
            {"price": ["Ensure this value is greater than or equal to 0.00."]},
            id="negative-price",
        ),
        pytest.param(
            {"stock_quantity": -1}, {"stock_quantity": [AT_LEAST_ZERO]}, id="negative-stock"
        ),
        pytest.param(
            {"category": 999_999}, {"category": [UNKNOWN_CATEGORY]}, id="unknown-category"
        ),
        pytest.param({"price": "abc"}, {"price": ["A valid number is required."]}, id="nan"),
        pytest.param(
            {"price": "1.001"},
            {"price": ["Ensure that there are no more than 2 decimal places."]},
            id="three-places",
        ),
        pytest.param({"sku": ""}, {"sku": ["This field may not be blank."]}, id="blank-sku"),
    ],
)
def test_invalid_input_is_400_with_details_and_nothing_is_created(
    staff_client: APIClient, category: Category, overrides: dict[str, Any], details: dict
) -> None:
    response = staff_client.post(PRODUCT_LIST_URL, _payload(category, **overrides), format="json")

    assert response.status_code == 400
    assert error_of(response) == {
        "code": "validation_error",
        "message": INVALID,
        "details": details,
    }
    assert Product.objects.count() == 0


def test_missing_required_fields_are_listed(staff_client: APIClient) -> None:
    response = staff_client.post(PRODUCT_LIST_URL, {}, format="json")

    assert response.status_code == 400
    required = ["This field is required."]
    assert error_of(response)["details"] == {
        "sku": required,
        "name": required,
        "price": required,
        "stock_quantity": required,
        "category": required,
    }
    assert Product.objects.count() == 0


def test_a_duplicate_sku_on_create_is_400(staff_client: APIClient, category: Category) -> None:
    ProductFactory(sku="LAMP-001", category=category)
    before = product_state()

    response = staff_client.post(PRODUCT_LIST_URL, _payload(category), format="json")

    assert response.status_code == 400
    assert error_of(response) == {
        "code": "validation_error",
        "message": INVALID,
        "details": {"sku": ["product with this SKU already exists."]},
    }
    assert product_state() == before


def test_a_duplicate_sku_on_update_is_400(staff_client: APIClient) -> None:
    ProductFactory(sku="TAKEN")
    product = ProductFactory(sku="MINE")
    before = product_state()

    response = staff_client.patch(product_url(product.pk), {"sku": "TAKEN"}, format="json")

    assert response.status_code == 400
    assert error_of(response)["details"] == {"sku": ["product with this SKU already exists."]}
    assert product_state() == before


def test_keeping_the_own_sku_on_update_is_fine(staff_client: APIClient) -> None:
    product = ProductFactory(sku="MINE")

    response = staff_client.patch(
        product_url(product.pk), {"sku": "MINE", "name": "Renamed"}, format="json"
    )

    assert response.status_code == 200
    product.refresh_from_db()
    assert (product.sku, product.name) == ("MINE", "Renamed")


# --- staff update -----------------------------------------------------------------------------


def test_staff_patches_some_fields_and_the_rest_stay(staff_client: APIClient) -> None:
    product = ProductFactory(price=Decimal("10.00"), stock_quantity=4, attributes={"a": 1})
    new_category = CategoryFactory()

    response = staff_client.patch(
        product_url(product.pk),
        {"price": "11.50", "category": new_category.pk, "attributes": {"b": 2}},
        format="json",
    )

    assert response.status_code == 200
    assert response.json() == product_body(product)
    assert (product.price, product.stock_quantity, product.category_id, product.attributes) == (
        Decimal("11.50"),
        4,
        new_category.pk,
        {"b": 2},
    )


def test_read_only_fields_cannot_be_set_on_update(staff_client: APIClient) -> None:
    product = ProductFactory()
    make_review(product=product, user=UserFactory(), rating=2)
    product.refresh_from_db()
    created_at = product.created_at

    response = staff_client.patch(
        product_url(product.pk),
        {
            "id": 777_777,
            "review_count": 9,
            "rating_total": 45,
            "rating_average": "5.00",
            "created_at": "2001-01-01T00:00:00Z",
            "name": "Renamed",
        },
        format="json",
    )

    assert response.status_code == 200
    product.refresh_from_db()
    assert (product.name, product.review_count, product.rating_total, product.created_at) == (
        "Renamed",
        1,
        2,
        created_at,
    )
    assert (response.json()["id"], response.json()["rating_average"]) == (product.pk, "2.00")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price": "-1.00"}, "price"),
        ({"stock_quantity": -3}, "stock_quantity"),
        ({"category": 999_999}, "category"),
    ],
)
def test_invalid_patch_is_400_and_changes_nothing(
    staff_client: APIClient, change: dict[str, Any], field: str
) -> None:
    product = ProductFactory()
    before = product_state()

    response = staff_client.patch(product_url(product.pk), change, format="json")

    assert response.status_code == 400
    assert list(error_of(response)["details"]) == [field]
    assert product_state() == before


def test_patching_a_missing_product_is_404(staff_client: APIClient) -> None:
    response = staff_client.patch(product_url(999_999), {"name": "x"}, format="json")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# --- staff delete -----------------------------------------------------------------------------


def test_staff_deletes_a_product(staff_client: APIClient) -> None:
    product = ProductFactory()
    kept = ProductFactory(category=product.category)

    response = staff_client.delete(product_url(product.pk))

    assert response.status_code == 204
    assert list(Product.objects.values_list("pk", flat=True)) == [kept.pk]


def test_deleting_a_product_that_is_on_an_order_is_409_in_use(staff_client: APIClient) -> None:
    item = OrderItemFactory()
    before = product_state()

    response = staff_client.delete(product_url(item.product_id))

    assert response.status_code == 409
    assert error_of(response) == {
        "code": "in_use",
        "message": "This object is still referenced by other records.",
        "details": {},
    }
    assert product_state() == before


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_sku_that_slips_past_validation_is_409_not_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two requests racing with the same SKU both pass the serializer's lookup;
    # the unique index stops the second, and the client sees a clean 409.
    category = CategoryFactory()
    ProductFactory(sku="LAMP-001", category=category)
    before = product_state()
    monkeypatch.setattr(UniqueValidator, "__call__", lambda self, value, field: None)

    response = client_for(StaffFactory()).post(PRODUCT_LIST_URL, _payload(category), format="json")

    assert response.status_code == 409
    assert error_of(response) == {
        "code": "conflict",
        "message": "The request conflicts with existing data.",
        "details": {},
    }
    assert product_state() == before
