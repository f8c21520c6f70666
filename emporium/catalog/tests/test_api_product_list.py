"""The product list: filters, orderings, keyset pages and its query count."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pytest_django import DjangoAssertNumQueries
from rest_framework.test import APIClient

from emporium.catalog import services
from emporium.catalog.models import Category, Product
from emporium.catalog.tests.support import PRODUCT_LIST_URL, error_of, product_url, result_ids
from emporium.core.tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@dataclass
class Shop:
    """Electronics > Audio > Headphones, Electronics > Phones, Home > Kitchen."""

    electronics: Category
    audio: Category
    headphones: Category
    phones: Category
    home: Category
    kitchen: Category
    products: dict[str, Product]


@pytest.fixture
def shop() -> Shop:
    electronics = services.category_create(name="Electronics")
    audio = services.category_create(name="Audio", parent=electronics)
    headphones = services.category_create(name="Headphones", parent=audio)
    phones = services.category_create(name="Phones", parent=electronics)
    home = services.category_create(name="Home")
    kitchen = services.category_create(name="Kitchen", parent=home)
    rows = [
        ("cable", "USB Cable", electronics, "4.99", 10),
        ("amp", "Audio Amplifier", audio, "150.00", 0),
        ("cans", "Studio Headphones", headphones, "89.00", 3),
        ("buds", "Wireless Earbuds", headphones, "59.00", 0),
        ("phone", "Smart Phone", phones, "499.00", 5),
        ("pan", "Frying Pan", kitchen, "35.00", 12),
        ("kettle", "Steel Kettle", kitchen, "59.00", 7),
        ("rug", "Wool Rug", home, "120.00", 1),
    ]
    products = {
        key: ProductFactory(
            name=name, category=category, price=Decimal(price), stock_quantity=stock
        )
        for key, name, category, price, stock in rows
    }
    return Shop(electronics, audio, headphones, phones, home, kitchen, products)


def _list(client: APIClient, **params: Any) -> Any:
    return client.get(PRODUCT_LIST_URL, params)


def _ids(shop: Shop, *keys: str) -> list[int]:
    return [shop.products[key].pk for key in keys]


# --- category -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("electronics", ["cable", "amp", "cans", "buds", "phone"]),
        ("audio", ["amp", "cans", "buds"]),
        ("headphones", ["cans", "buds"]),
        ("phones", ["phone"]),
        ("home", ["pan", "kettle", "rug"]),
        ("kitchen", ["pan", "kettle"]),
    ],
)
def test_category_filter_covers_the_whole_subtree_and_nothing_beside_it(
    api_client: APIClient, shop: Shop, category: str, expected: list[str]
) -> None:
    response = _list(api_client, category=getattr(shop, category).pk, ordering="created_at")

    assert response.status_code == 200
    assert result_ids(response) == _ids(shop, *expected)


def test_category_filter_follows_a_moved_subtree(api_client: APIClient, shop: Shop) -> None:
    services.category_update(category=shop.audio, parent=shop.home)

    electronics = _list(api_client, category=shop.electronics.pk, ordering="created_at")
    home = _list(api_client, category=shop.home.pk, ordering="created_at")

    assert result_ids(electronics) == _ids(shop, "cable", "phone")
    assert result_ids(home) == _ids(shop, "amp", "cans", "buds", "pan", "kettle", "rug")


def test_an_unknown_category_is_400(api_client: APIClient, shop: Shop) -> None:
    response = _list(api_client, category=999_999)

    assert response.status_code == 400
    assert error_of(response) == {
        "code": "validation_error",
        "message": "No such category.",
        "details": {"category": ["Category 999999 does not exist."]},
    }


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_a_malformed_category_is_400(api_client: APIClient, value: str) -> None:
    response = _list(api_client, category=value)

    assert response.status_code == 400
    assert list(error_of(response)["details"]) == ["category"]


# --- price ----------------------------------------------------------------------------------


def test_price_bounds_are_inclusive(api_client: APIClient, shop: Shop) -> None:
    both = _list(api_client, min_price="59.00", max_price="150", ordering="price")
    low_only = _list(api_client, min_price="120", ordering="price")
    high_only = _list(api_client, max_price="35.00", ordering="price")
    exact = _list(api_client, min_price="59", max_price="59", ordering="price")

    # buds and kettle cost the same: the older (lower id) comes first
    assert result_ids(both) == _ids(shop, "buds", "kettle", "cans", "rug", "amp")
    assert result_ids(low_only) == _ids(shop, "rug", "amp", "phone")
    assert result_ids(high_only) == _ids(shop, "cable", "pan")
    assert result_ids(exact) == _ids(shop, "buds", "kettle")


def test_min_price_above_max_price_is_400(api_client: APIClient, shop: Shop) -> None:
    response = _list(api_client, min_price="10.01", max_price="10.00")

    assert response.status_code == 400
    assert error_of(response)["details"] == {"max_price": ["Must not be below min_price."]}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"min_price": "-1"}, "min_price"), ({"max_price": "cheap"}, "max_price")],
)
def test_a_malformed_price_bound_is_400(
    api_client: APIClient, params: dict[str, str], field: str
) -> None:
    response = _list(api_client, **params)

    assert response.status_code == 400
    assert list(error_of(response)["details"]) == [field]


# --- stock and name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", ["cable", "cans", "phone", "pan", "kettle", "rug"]),
        ("false", ["amp", "buds"]),
    ],
)
def test_in_stock_filter(
    api_client: APIClient, shop: Shop, value: str, expected: list[str]
) -> None:
    response = _list(api_client, in_stock=value, ordering="created_at")

    assert response.status_code == 200
    assert result_ids(response) == _ids(shop, *expected)


def test_without_in_stock_both_kinds_are_listed(api_client: APIClient, shop: Shop) -> None:
    response = _list(api_client, ordering="created_at")

    assert len(result_ids(response)) == 8


def test_a_malformed_in_stock_is_400(api_client: APIClient) -> None:
    response = _list(api_client, in_stock="maybe")

    assert response.status_code == 400
    assert list(error_of(response)["details"]) == ["in_stock"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("phone", ["cans", "phone"]),
        ("PHONE", ["cans", "phone"]),
        ("  wireless ", ["buds"]),
        ("st", ["cans", "kettle"]),
        ("nothing like it", []),
    ],
)
def test_q_matches_part_of_the_name_ignoring_case(
    api_client: APIClient, shop: Shop, query: str, expected: list[str]
) -> None:
    response = _list(api_client, q=query, ordering="created_at")

    assert response.status_code == 200
    assert result_ids(response) == _ids(shop, *expected)


def test_filters_combine(api_client: APIClient, shop: Shop) -> None:
    response = _list(
        api_client,
        category=shop.electronics.pk,
        min_price="50",
        in_stock="true",
        q="o",
        ordering="-price",
    )

    assert result_ids(response) == _ids(shop, "phone", "cans")


# --- ordering -------------------------------------------------------------------------------


@pytest.fixture
def ordered() -> list[Product]:
    """Five products with ties on price, name and creation time, so ties need the id."""
    category = services.category_create(name="Everything")
    specs = [
        # name,     price,   seconds after the base time
        ("Bravo", "20.00", 30),
        ("Alpha", "10.00", 10),
        ("Bravo", "10.00", 20),
        ("Charlie", "5.00", 10),
        ("Alpha", "20.00", 40),
    ]
    base = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    products = []
    for name, price, seconds in specs:
        product = ProductFactory(name=name, price=Decimal(price), category=category)
        Product.objects.filter(pk=product.pk).update(
            created_at=base + datetime.timedelta(seconds=seconds)
        )
        products.append(product)
    return products


@pytest.mark.parametrize(
    ("ordering", "positions"),
    [
        ("price", [3, 1, 2, 0, 4]),
        ("-price", [4, 0, 2, 1, 3]),
        ("name", [1, 4, 0, 2, 3]),
        ("-name", [3, 2, 0, 4, 1]),
        ("created_at", [1, 3, 2, 0, 4]),
        ("-created_at", [4, 0, 2, 3, 1]),
    ],
)
def test_ordering_gives_the_exact_order_with_ties_broken_by_id(
    api_client: APIClient, ordered: list[Product], ordering: str, positions: list[int]
) -> None:
    response = _list(api_client, ordering=ordering)

    assert response.status_code == 200
    assert result_ids(response) == [ordered[position].pk for position in positions]


def test_the_default_ordering_is_newest_first(
    api_client: APIClient, ordered: list[Product]
) -> None:
    response = _list(api_client)
    empty = _list(api_client, ordering="")

    assert result_ids(response) == [ordered[position].pk for position in [4, 0, 2, 3, 1]]
    assert result_ids(empty) == result_ids(response)


@pytest.mark.parametrize("value", ["stock_quantity", "id", "PRICE", "price,name"])
def test_an_unknown_ordering_is_400(api_client: APIClient, value: str) -> None:
    response = _list(api_client, ordering=value)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert list(error["details"]) == ["ordering"]


# --- keyset pages ---------------------------------------------------------------------------


def _walk(client: APIClient, first_params: dict[str, Any]) -> tuple[list[list[int]], list[str]]:
    """Follows next links from the first page; returns the pages and the links followed."""
    pages: list[list[int]] = []
    links: list[str] = []
    response = _list(client, **first_params)
    for _ in range(50):  # a link that loops must fail the test, not hang it
        assert response.status_code == 200
        pages.append(result_ids(response))
        link = response.json()["next"]
        if link is None:
            return pages, links
        links.append(link)
        response = client.get(link)
    raise AssertionError(f"next links did not end after 50 pages: {links[-3:]}")


def test_next_links_keep_every_filter_and_walk_ties_without_gaps(
    api_client: APIClient, ordered: list[Product]
) -> None:
    filler = ProductFactory(name="Zulu", price=Decimal("99.00"), category=ordered[0].category)
    params = {"min_price": "10", "max_price": "20", "q": "a", "ordering": "-price", "page_size": 2}

    pages, links = _walk(api_client, params)

    assert pages == [
        [ordered[4].pk, ordered[0].pk],
        [ordered[2].pk, ordered[1].pk],
    ]
    assert filler.pk not in [product_id for page in pages for product_id in page]
    for link in links:
        query = parse_qs(urlsplit(link).query)
        assert {key: value for key, value in query.items() if key != "cursor"} == {
            "min_price": ["10"],
            "max_price": ["20"],
            "q": ["a"],
            "ordering": ["-price"],
            "page_size": ["2"],
        }
        assert urlsplit(link).path == PRODUCT_LIST_URL


@pytest.mark.parametrize(
    "ordering", ["price", "-price", "name", "-name", "created_at", "-created_at"]
)
def test_pages_of_one_cover_every_product_once_in_order(
    api_client: APIClient, ordered: list[Product], ordering: str
) -> None:
    whole = result_ids(_list(api_client, ordering=ordering))

    pages, _ = _walk(api_client, {"ordering": ordering, "page_size": 1})

    assert pages == [[product_id] for product_id in whole]


def test_previous_link_returns_to_the_page_before(
    api_client: APIClient, ordered: list[Product]
) -> None:
    first = _list(api_client, ordering="price", page_size=2)
    second = api_client.get(first.json()["next"])
    back = api_client.get(second.json()["previous"])

    assert first.json()["previous"] is None
    assert result_ids(back) == result_ids(first)
    assert back.json()["previous"] is None
    assert back.json()["next"] is not None


def test_a_cursor_from_another_ordering_is_400(
    api_client: APIClient, ordered: list[Product]
) -> None:
    link = _list(api_client, ordering="price", page_size=2).json()["next"]
    cursor = parse_qs(urlsplit(link).query)["cursor"][0]

    response = _list(api_client, ordering="name", cursor=cursor)

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_cursor"


@pytest.mark.parametrize("cursor", ["garbage", "e30", "!!!"])
def test_a_malformed_cursor_is_400(api_client: APIClient, cursor: str) -> None:
    response = _list(api_client, cursor=cursor)

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_cursor"


def test_page_size_of_100_is_served_and_more_is_400(api_client: APIClient) -> None:
    category = services.category_create(name="Bulk")
    Product.objects.bulk_create(
        Product(name=f"Item {n:03d}", sku=f"BULK-{n:03d}", price=Decimal(n), category=category)
        for n in range(105)
    )

    response = _list(api_client, page_size=100, ordering="price")
    too_many = _list(api_client, page_size=101, ordering="price")

    assert response.status_code == 200
    assert len(result_ids(response)) == 100
    rest = api_client.get(response.json()["next"])
    assert len(result_ids(rest)) == 5
    assert rest.json()["next"] is None
    assert too_many.status_code == 400
    assert error_of(too_many)["code"] == "validation_error"
    assert error_of(too_many)["details"] == {"page_size": ["101"]}


def test_the_default_page_is_20(api_client: APIClient) -> None:
    category = services.category_create(name="Bulk")
    Product.objects.bulk_create(
        Product(name=f"Item {n:03d}", sku=f"BULK-{n:03d}", price=Decimal(n), category=category)
        for n in range(21)
    )

    response = _list(api_client)

    assert len(result_ids(response)) == 20


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1000", "+5", "1_0", "\u0665"])
def test_a_malformed_page_size_is_400(api_client: APIClient, value: str) -> None:
    response = _list(api_client, page_size=value)

    assert response.status_code == 400
    assert error_of(response)["details"] == {"page_size": [value]}


# --- query counts ---------------------------------------------------------------------------


@pytest.fixture
def twenty_products() -> list[Product]:
    roots = [services.category_create(name=f"Root {n}") for n in range(2)]
    leaves = [services.category_create(name=f"Leaf {n}", parent=roots[n % 2]) for n in range(4)]
    return [ProductFactory(category=leaves[n % 4]) for n in range(20)]


def test_the_product_list_takes_one_query_however_many_categories(
    api_client: APIClient,
    twenty_products: list[Product],
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    with django_assert_num_queries(1):
        response = _list(api_client)

    assert len(result_ids(response)) == 20
    assert len({row["category_name"] for row in response.json()["results"]}) == 4


def test_the_category_filter_adds_one_query_for_the_subtree_path(
    api_client: APIClient,
    twenty_products: list[Product],
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    root = Category.objects.get(name="Root 0")

    with django_assert_num_queries(2):
        response = _list(api_client, category=root.pk, q="Product", in_stock="true")

    assert len(result_ids(response)) == 10


def test_the_product_detail_takes_one_query(
    api_client: APIClient,
    twenty_products: list[Product],
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    product = twenty_products[7]

    with django_assert_num_queries(1):
        response = api_client.get(product_url(product.pk))

    assert response.json()["category_name"] == product.category.name


def test_the_list_query_count_does_not_grow_with_the_page(
    api_client: APIClient, twenty_products: list[Product]
) -> None:
    with CaptureQueriesContext(connection) as small:
        _list(api_client, page_size=2)
    with CaptureQueriesContext(connection) as large:
        _list(api_client, page_size=20)

    assert len(small.captured_queries) == len(large.captured_queries) == 1
