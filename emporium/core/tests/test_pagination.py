"""Keyset pagination: the filter itself, and whole walks through /api/products/."""

from __future__ import annotations

import base64
import datetime
import functools
import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db.models import Q
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from emporium.catalog.models import Category, Product
from emporium.core.pagination import KeysetPagination, _encode_value, keyset_filter
from emporium.core.tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

PRODUCTS_URL = "/api/products/"
MAX_PAGES = 200

# (price, name) of the walk fixture: long runs of equal prices and repeated names.
ROWS = [
    ("5.00", "kiwi"),
    ("7.50", "apple"),
    ("5.00", "banana"),
    ("2.25", "kiwi"),
    ("5.00", "apple"),
    ("9.99", "cherry"),
    ("5.00", "kiwi"),
    ("7.50", "banana"),
    ("2.25", "apple"),
    ("5.00", "date"),
    ("5.00", "kiwi"),
    ("7.50", "cherry"),
    ("9.99", "apple"),
    ("5.00", "banana"),
    ("2.25", "date"),
    ("5.00", "kiwi"),
    ("7.50", "kiwi"),
    ("5.00", "apple"),
    ("9.99", "kiwi"),
    ("2.25", "banana"),
    ("5.00", "cherry"),
    ("7.50", "date"),
    ("5.00", "kiwi"),
]
ORDERING_FIELDS = {
    "price": ("price", False),
    "-price": ("price", True),
    "name": ("name", False),
    "-name": ("name", True),
    "created_at": ("created_at", False),
    "-created_at": ("created_at", True),
}
INVALID_CURSOR = {
    "error": {
        "code": "invalid_cursor",
        "message": "The cursor is not valid for this list.",
        "details": {},
    }
}


@pytest.fixture
def category() -> Category:
    return CategoryFactory()


@pytest.fixture
def products(category: Category) -> list[Product]:
    created = [
        ProductFactory(category=category, price=Decimal(price), name=name) for price, name in ROWS
    ]
    # Three creation instants shared by several rows each, so created_at has ties too.
    base = timezone.now().replace(microsecond=123456) - datetime.timedelta(days=1)
    for index, product in enumerate(created):
        instant = base + datetime.timedelta(seconds=index % 3)
        Product.objects.filter(pk=product.pk).update(created_at=instant)
    return list(Product.objects.order_by("id"))


def expected_ids(rows: list[Product], ordering: str) -> list[int]:
    field, descending = ORDERING_FIELDS[ordering]
    ordered = sorted(rows, key=lambda row: (getattr(row, field), row.pk), reverse=descending)
    return [row.pk for row in ordered]


def ids(page: dict[str, Any]) -> list[int]:
    return [row["id"] for row in page["results"]]


def walk(client: APIClient, first_url: str, link: str) -> list[dict[str, Any]]:
    pages = []
    url: str | None = first_url
    while url is not None:
        assert len(pages) < MAX_PAGES, "the walk does not end"
        response = client.get(url)
        assert response.status_code == 200, response.content
        pages.append(response.json())
        url = pages[-1][link]
    return pages


def cursor_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["cursor"][0]


def decode(cursor: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def encode(payload: Any) -> str:
    raw = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- whole walks through the API ----------------------------------------------------------


@pytest.mark.parametrize("ordering", sorted(ORDERING_FIELDS))
@pytest.mark.parametrize("page_size", [1, 4, 7, 23])
def test_walking_next_links_visits_every_product_once_in_order(
    api_client: APIClient, products: list[Product], ordering: str, page_size: int
) -> None:
    pages = walk(api_client, f"{PRODUCTS_URL}?ordering={ordering}&page_size={page_size}", "next")

    visited = [product_id for page in pages for product_id in ids(page)]
    assert visited == expected_ids(products, ordering)
    assert [len(page["results"]) for page in pages] == [
        min(page_size, len(ROWS) - start) for start in range(0, len(ROWS), page_size)
    ]
    assert pages[0]["previous"] is None
    assert all(page["previous"] is not None for page in pages[1:])
    assert pages[-1]["next"] is None


@pytest.mark.parametrize("ordering", sorted(ORDERING_FIELDS))
def test_walking_back_with_previous_links_returns_the_same_pages(
    api_client: APIClient, products: list[Product], ordering: str
) -> None:
    forward = walk(api_client, f"{PRODUCTS_URL}?ordering={ordering}&page_size=4", "next")
    assert len(forward) == 6

    backward = walk(api_client, forward[-1]["previous"], "previous")

    assert [ids(page) for page in reversed(backward)] == [ids(page) for page in forward[:-1]]
    assert all(page["next"] is not None for page in backward)
    assert backward[-1]["previous"] is None


def test_next_link_of_a_page_reached_backwards_leads_forward_again(
    api_client: APIClient, products: list[Product]
) -> None:
    forward = walk(api_client, f"{PRODUCTS_URL}?ordering=price&page_size=4", "next")
    third_again = api_client.get(forward[3]["previous"]).json()
    assert ids(third_again) == ids(forward[2])

    fourth_again = api_client.get(third_again["next"]).json()

    assert ids(fourth_again) == ids(forward[3])


def test_the_default_ordering_is_newest_first(
    api_client: APIClient, products: list[Product]
) -> None:
    pages = walk(api_client, f"{PRODUCTS_URL}?page_size=5", "next")

    assert [i for page in pages for i in ids(page)] == expected_ids(products, "-created_at")


def test_links_keep_the_other_query_parameters(
    api_client: APIClient, products: list[Product]
) -> None:
    url = f"{PRODUCTS_URL}?ordering=-price&page_size=3&min_price=5.00&max_price=7.50"
    pages = walk(api_client, url, "next")

    inside = [p for p in products if Decimal("5.00") <= p.price <= Decimal("7.50")]
    assert [i for page in pages for i in ids(page)] == expected_ids(inside, "-price")
    query = parse_qs(urlsplit(pages[0]["next"]).query)
    assert {key: values for key, values in query.items() if key != "cursor"} == {
        "max_price": ["7.50"],
        "min_price": ["5.00"],
        "ordering": ["-price"],
        "page_size": ["3"],
    }
    assert urlsplit(pages[0]["next"]).path == PRODUCTS_URL


def test_a_list_of_exactly_one_page_has_no_next_link(
    api_client: APIClient, category: Category
) -> None:
    ProductFactory.create_batch(4, category=category)

    body = api_client.get(PRODUCTS_URL, {"page_size": 4}).json()

    assert len(body["results"]) == 4
    assert body["next"] is None
    assert body["previous"] is None


def test_an_empty_list_has_no_links(api_client: APIClient) -> None:
    assert api_client.get(PRODUCTS_URL).json() == {"next": None, "previous": None, "results": []}


def test_rows_added_behind_the_cursor_do_not_shift_the_walk(
    api_client: APIClient, products: list[Product], category: Category
) -> None:
    first = api_client.get(PRODUCTS_URL, {"ordering": "price", "page_size": 5}).json()
    ProductFactory(category=category, price=Decimal("0.50"))  # sorts before the cursor

    second = api_client.get(first["next"]).json()

    assert ids(second) == expected_ids(products, "price")[5:10]


# --- page size -----------------------------------------------------------------------------


@pytest.fixture
def many_products(category: Category) -> list[Product]:
    Product.objects.bulk_create(ProductFactory.build_batch(105, category=category))
    return list(Product.objects.order_by("id"))


def test_a_page_of_100_is_served_and_the_rest_follows(
    api_client: APIClient, many_products: list[Product]
) -> None:
    first = api_client.get(PRODUCTS_URL, {"ordering": "price", "page_size": "100"}).json()
    second = api_client.get(first["next"]).json()

    assert len(first["results"]) == 100
    assert len(second["results"]) == 5
    assert second["next"] is None


def test_the_default_page_size_is_20(api_client: APIClient, many_products: list[Product]) -> None:
    body = api_client.get(PRODUCTS_URL).json()

    assert len(body["results"]) == 20
    assert body["next"] is not None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "page_size must be from 1 to 100."),
        ("101", "page_size must be from 1 to 100."),
        ("1000000", "page_size must be from 1 to 100."),
        ("-5", "page_size must be a whole number."),
        ("abc", "page_size must be a whole number."),
        ("2.5", "page_size must be a whole number."),
        ("", "page_size must be a whole number."),
    ],
)
def test_a_bad_page_size_is_400(
    api_client: APIClient, products: list[Product], value: str, message: str
) -> None:
    response = api_client.get(PRODUCTS_URL, {"page_size": value})

    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "validation_error", "message": message, "details": {"page_size": [value]}}
    }


# --- cursors -------------------------------------------------------------------------------


@pytest.fixture
def price_cursor(api_client: APIClient, products: list[Product]) -> str:
    body = api_client.get(PRODUCTS_URL, {"ordering": "price", "page_size": 3}).json()
    return cursor_of(body["next"])


def test_a_cursor_carries_the_boundary_row_of_every_ordering_field(
    api_client: APIClient, products: list[Product], price_cursor: str
) -> None:
    boundary = Product.objects.get(pk=expected_ids(products, "price")[2])

    payload = decode(price_cursor)

    assert payload["v"] == [str(boundary.price), boundary.pk]
    assert payload["d"] == "n"


@pytest.mark.parametrize(
    ("made_with", "used_with"),
    [
        ("price", "name"),
        ("price", "-price"),
        ("name", "-name"),
        ("created_at", "price"),
        ("-created_at", "created_at"),
    ],
)
def test_a_cursor_from_another_ordering_is_400(
    api_client: APIClient, products: list[Product], made_with: str, used_with: str
) -> None:
    body = api_client.get(PRODUCTS_URL, {"ordering": made_with, "page_size": 3}).json()

    response = api_client.get(
        PRODUCTS_URL, {"ordering": used_with, "cursor": cursor_of(body["next"])}
    )

    assert response.status_code == 400
    assert response.json() == INVALID_CURSOR


def test_a_cursor_used_without_its_ordering_falls_to_the_default_and_is_400(
    api_client: APIClient, price_cursor: str
) -> None:
    response = api_client.get(PRODUCTS_URL, {"cursor": price_cursor})

    assert response.status_code == 400
    assert response.json() == INVALID_CURSOR


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        "é",
        "a",
        encode(b"not json at all"),
        encode(b"\xff\xfe\x00"),
        encode([1, 2, 3]),
        encode("a string"),
        encode(42),
        encode(None),
    ],
)
def test_a_garbage_cursor_is_400(
    api_client: APIClient, products: list[Product], cursor: str
) -> None:
    response = api_client.get(PRODUCTS_URL, {"ordering": "price", "cursor": cursor})

    assert response.status_code == 400
    assert response.json() == INVALID_CURSOR


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: p.update(f="00000000"), id="fingerprint"),
        pytest.param(lambda p: p.pop("f"), id="no-fingerprint"),
        pytest.param(lambda p: p.pop("v"), id="no-values"),
        pytest.param(lambda p: p.pop("d"), id="no-direction"),
        pytest.param(lambda p: p.update(d="x"), id="bad-direction"),
        pytest.param(lambda p: p.update(v=p["v"][:1]), id="too-few-values"),
        pytest.param(lambda p: p.update(v=[*p["v"], 1]), id="too-many-values"),
        pytest.param(lambda p: p.update(v="5.00,3"), id="values-not-a-list"),
        pytest.param(lambda p: p.update(v=[None, p["v"][1]]), id="null-price"),
        pytest.param(lambda p: p.update(v=[p["v"][0], None]), id="null-id"),
        pytest.param(lambda p: p.update(v=["cheap", p["v"][1]]), id="price-not-a-number"),
        pytest.param(lambda p: p.update(v=["NaN", p["v"][1]]), id="price-nan"),
        pytest.param(lambda p: p.update(v=["-Infinity", p["v"][1]]), id="price-infinite"),
        pytest.param(lambda p: p.update(v=["1e999999", p["v"][1]]), id="price-out-of-range"),
        pytest.param(lambda p: p.update(v=["123456789012.00", p["v"][1]]), id="price-too-long"),
        pytest.param(lambda p: p.update(v=[{"a": 1}, p["v"][1]]), id="price-an-object"),
        pytest.param(lambda p: p.update(v=[p["v"][0], "seven"]), id="id-not-a-number"),
        pytest.param(lambda p: p.update(v=[p["v"][0], [7]]), id="id-a-list"),
        pytest.param(lambda p: p.update(v=[p["v"][0], 10**30]), id="id-out-of-range"),
        pytest.param(lambda p: p.update(v=[p["v"][0], -(10**30)]), id="id-out-of-range-low"),
    ],
)
def test_a_tampered_cursor_is_400(api_client: APIClient, price_cursor: str, tamper: Any) -> None:
    payload = decode(price_cursor)
    tamper(payload)
    client = APIClient(raise_request_exception=False)

    response = client.get(PRODUCTS_URL, {"ordering": "price", "cursor": encode(payload)})

    assert response.status_code == 400, response.content
    assert response.json() == INVALID_CURSOR


@pytest.mark.parametrize(
    "created", ["yesterday", "2026-13-45T10:00:00+00:00", "", 12345, "2026-01-01T25:61:00"]
)
def test_a_cursor_with_a_bad_timestamp_is_400(
    api_client: APIClient, products: list[Product], created: Any
) -> None:
    body = api_client.get(PRODUCTS_URL, {"ordering": "created_at", "page_size": 3}).json()
    payload = decode(cursor_of(body["next"]))
    payload["v"][0] = created

    response = APIClient(raise_request_exception=False).get(
        PRODUCTS_URL, {"ordering": "created_at", "cursor": encode(payload)}
    )

    assert response.status_code == 400, response.content
    assert response.json() == INVALID_CURSOR


def test_a_cursor_may_omit_its_base64_padding_or_keep_it(
    api_client: APIClient, products: list[Product], price_cursor: str
) -> None:
    padded = price_cursor + "=" * (-len(price_cursor) % 4)

    a = api_client.get(PRODUCTS_URL, {"ordering": "price", "page_size": 3, "cursor": price_cursor})
    b = api_client.get(PRODUCTS_URL, {"ordering": "price", "page_size": 3, "cursor": padded})

    assert a.status_code == b.status_code == 200
    assert ids(a.json()) == ids(b.json()) == expected_ids(products, "price")[3:6]


# --- keyset_filter, unit -------------------------------------------------------------------


def _python_order(ordering: tuple[str, ...]) -> Any:
    def compare(left: Product, right: Product) -> int:
        for field in ordering:
            name, descending = (field[1:], True) if field.startswith("-") else (field, False)
            a, b = getattr(left, name), getattr(right, name)
            if a != b:
                return (1 if a > b else -1) * (-1 if descending else 1)
        return 0

    return functools.cmp_to_key(compare)


@pytest.mark.parametrize(
    "ordering",
    [
        ("id",),
        ("-id",),
        ("price", "id"),
        ("-price", "-id"),
        ("price", "-name", "id"),
        ("-price", "name", "-id"),
        ("name", "price", "-id"),
        ("created_at", "price", "id"),
    ],
)
def test_keyset_filter_selects_exactly_the_rows_after_and_before_a_position(
    products: list[Product], ordering: tuple[str, ...]
) -> None:
    ordered = sorted(products, key=_python_order(ordering))
    names = [field.lstrip("-") for field in ordering]

    for index, row in enumerate(ordered):
        values = [getattr(row, name) for name in names]
        after = Product.objects.filter(keyset_filter(ordering, values, forward=True))
        before = Product.objects.filter(keyset_filter(ordering, values, forward=False))

        assert list(after.order_by(*ordering).values_list("pk", flat=True)) == [
            r.pk for r in ordered[index + 1 :]
        ]
        assert list(before.order_by(*ordering).values_list("pk", flat=True)) == [
            r.pk for r in ordered[:index]
        ]


def test_keyset_filter_with_a_position_between_rows(products: list[Product]) -> None:
    values = [Decimal("6.00"), 0]

    after = Product.objects.filter(keyset_filter(("price", "id"), values, forward=True))
    before = Product.objects.filter(keyset_filter(("-price", "-id"), values, forward=True))

    assert set(after.values_list("pk", flat=True)) == {
        p.pk for p in products if p.price > Decimal("6.00")
    }
    assert set(before.values_list("pk", flat=True)) == {
        p.pk for p in products if p.price < Decimal("6.00")
    }


def test_keyset_filter_bounds_the_first_field_for_the_index() -> None:
    condition = keyset_filter(("price", "id"), [Decimal("5.00"), 7], forward=True)

    assert condition == Q(price__gte=Decimal("5.00")) & (
        Q(price__gt=Decimal("5.00")) | (Q(price=Decimal("5.00")) & Q(id__gt=7))
    )
    backward = keyset_filter(("-price", "-id"), [Decimal("5.00"), 7], forward=False)
    assert backward == Q(price__gte=Decimal("5.00")) & (
        Q(price__gt=Decimal("5.00")) | (Q(price=Decimal("5.00")) & Q(id__gt=7))
    )


def test_keyset_filter_needs_one_value_per_field() -> None:
    with pytest.raises(ValueError, match="zip"):
        keyset_filter(("price", "id"), [Decimal("1.00")], forward=True)


# --- the paginator, unit -------------------------------------------------------------------


def _request(**params: str) -> Request:
    return Request(APIRequestFactory().get("/api/things/", params))


@pytest.mark.parametrize("order_by", [(), ("price",), ("price", "name"), ("id", "price")])
def test_the_paginator_refuses_an_ordering_that_does_not_end_in_the_primary_key(
    category: Category, order_by: tuple[str, ...]
) -> None:
    queryset = Product.objects.all()
    queryset.query.clear_ordering(force=True)
    if order_by:
        queryset = queryset.order_by(*order_by)

    with pytest.raises(ValueError, match="ends with the primary key"):
        KeysetPagination().paginate_queryset(queryset, _request())


def test_the_paginator_accepts_pk_as_the_last_field(products: list[Product]) -> None:
    paginator = KeysetPagination()

    rows = paginator.paginate_queryset(Product.objects.order_by("-pk"), _request(page_size="2"))

    assert [row.pk for row in rows] == [products[-1].pk, products[-2].pk]
    response = paginator.get_paginated_response([row.pk for row in rows])
    next_page = paginator.paginate_queryset(
        Product.objects.order_by("-pk"),
        _request(page_size="2", cursor=cursor_of(response.data["next"])),
    )
    assert [row.pk for row in next_page] == [products[-3].pk, products[-4].pk]


def test_encode_value_makes_json_friendly_values() -> None:
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)

    assert _encode_value(Decimal("10.50")) == "10.50"
    assert _encode_value(moment) == "2026-01-02T03:04:05.678901+00:00"
    assert _encode_value(datetime.date(2026, 1, 2)) == "2026-01-02"
    assert _encode_value(7) == 7
    assert _encode_value("kiwi") == "kiwi"


def test_the_schema_describes_the_links_and_parameters() -> None:
    paginator = KeysetPagination()

    schema = paginator.get_paginated_response_schema({"type": "array"})
    parameters = paginator.get_schema_operation_parameters(None)  # type: ignore[arg-type]

    assert schema["required"] == ["results"]
    assert schema["properties"]["results"] == {"type": "array"}
    assert [p["name"] for p in parameters] == ["cursor", "page_size"]
    assert parameters[1]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"[" * 10_000 + b"]" * 10_000, id="deep-array"),
        pytest.param(b'{"f":' * 10_000 + b"1" + b"}" * 10_000, id="deep-object"),
    ],
)
def test_a_deeply_nested_cursor_is_400_not_a_server_error(
    api_client: APIClient, products: list[Product], document: bytes
) -> None:
    cursor = base64.urlsafe_b64encode(document).decode().rstrip("=")

    response = api_client.get(PRODUCTS_URL, {"ordering": "price", "cursor": cursor})

    assert response.status_code == 400
    assert response.json() == INVALID_CURSOR
