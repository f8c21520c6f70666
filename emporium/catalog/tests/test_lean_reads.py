"""The lean read path (the gateway, rows PostgreSQL wrote) against the DRF path.

With the response cache off, every request is built from the database, so each
comparison is between a page the gateway builds from rows written by
``emporium_product_rows`` (generated from ``representation.PRODUCT_FIELDS``)
and the page the DRF path builds from model instances (ORM, paginator, the
declaration's Python rendering, itself held to ProductSerializer's bytes) for
the same URL. The pages are walked through their own ``next`` and
``previous`` links, so every cursor compared is one the API really hands out.
On another database the lean path answers nothing: Django's path does.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from emporium.catalog import selectors, services
from emporium.catalog.models import PRODUCT_ORDERINGS, Category, Product
from emporium.catalog.representation import PRODUCT_FIELD_NAMES
from emporium.catalog.tests.conftest import Reader
from emporium.catalog.tests.support import PRODUCT_LIST_URL, product_url
from emporium.core.tests.factories import ProductFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _uncached() -> Iterator[None]:
    with override_settings(CATALOG_CACHE_ENABLED=False):
        yield


@pytest.fixture
def postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL writes the lean path's rows; elsewhere Django's path answers")


def _path(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


# Stored as written (raw JSON text): numbers in spellings Python writes otherwise
# (1.50, 1e16, 0.00001, 2.0), a big integer, escapes PostgreSQL and Python must
# write alike, nesting. PostgreSQL writes the rest of the row (emporium_product_rows).
ODD_ATTRIBUTES = (
    '{"w": 1.50, "tiny": 0.00001, "big": 1e16, "two": 2.0, "neg": -0.5,'
    ' "huge": 123456789012345678901234567890, "esc": "a\\u0001b\\\\c\\"d\\u2029e\\u007f",'
    ' "list": [1, "x", null, true, {"k": []}], "": "empty key"}'
)
# The same without non-integer numbers: written by msgspec rather than the json
# module (fast_path._object_text), which must give the same bytes.
INTEGER_ATTRIBUTES = (
    '{"neg": -7, "zero": -0, "huge": 123456789012345678901234567890,'
    ' "esc": "a\\u0001b\\\\c\\"d\\u2029e\\u007f\\ud83d\\ude00 \\t\\n",'
    ' "list": [1, "x", null, false, {"k": [], "ü": "ç"}], "": "empty key"}'
)
# (review_count, rating_total): averages that round half to even and otherwise.
RATINGS = ((0, 0), (8, 9), (8, 11), (3, 10), (3, 5), (1, 5), (2, 3))


def _store_attributes(product: Product, text: str) -> None:
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    table = Product._meta.db_table
    with connection.cursor() as cursor:
        sql = f"UPDATE {table} SET attributes = %s{cast} WHERE id = %s"  # noqa: S608 - constants
        cursor.execute(sql, [text, product.pk])


@pytest.fixture
def catalog() -> dict[str, Category]:
    """Two trees, products with tied prices, names and creation times, odd attributes."""
    home = services.category_create(name="Home")
    kitchen = services.category_create(name="Kitchen", parent=home)
    pans = services.category_create(name="Pans", parent=kitchen)
    garden = services.category_create(name="Garden")
    leaves = [kitchen, pans, garden, home]
    moment = datetime.datetime(2026, 3, 4, 5, 6, 7, 0, tzinfo=datetime.UTC)
    for index in range(26):
        product = ProductFactory(
            name=f"Item {index % 7}",  # ties on name
            price=Decimal(("4.99", "12.30", "0.50", "100.00")[index % 4]),  # ties on price
            stock_quantity=(0, 3)[index % 2],
            category=leaves[index % 4],
            attributes={"n": index, "ünï": "ç", "nested": {"a": [1, 2.5, None]}}
            if index % 3 == 0
            else {},
            description='line\nbreak "quoted" <tag> \u2028',
        )
        # Ties on created_at, and times with and without microseconds.
        created = moment + datetime.timedelta(seconds=index // 3, microseconds=(index % 2) * 17)
        count, total = RATINGS[index % len(RATINGS)]
        Product.objects.filter(pk=product.pk).update(
            created_at=created, review_count=count, rating_total=total
        )
        if index % 5 == 1:
            _store_attributes(product, ODD_ATTRIBUTES)
        elif index % 5 == 3:
            _store_attributes(product, INTEGER_ATTRIBUTES)
        if index % 6 == 2:  # characters JSON must escape, in every text column
            Product.objects.filter(pk=product.pk).update(
                name=f'Odd \\ "{index % 7}"\t\x01\u2029',
                sku=f"SKU\\{index}\u00e9",
            )
    return {"home": home, "kitchen": kitchen, "pans": pans, "garden": garden}


def _filters(catalog: dict[str, Category]) -> list[dict[str, str]]:
    return [
        {},
        {"category": str(catalog["home"].pk)},
        {"category": str(catalog["pans"].pk), "in_stock": "true"},
        {"min_price": "1", "max_price": "100.00"},
        {"in_stock": "false", "min_price": "0.50"},
        {"category": str(catalog["garden"].pk), "max_price": "12.3"},
    ]


def _body(answer: tuple[int, bytes, dict[str, str]]) -> Any:
    return json.loads(answer[1])


@pytest.mark.usefixtures("postgresql")
@pytest.mark.parametrize("ordering", sorted(PRODUCT_ORDERINGS))
def test_every_page_forward_and_back_is_the_drf_page_byte_for_byte(
    reader: Reader, catalog: dict[str, Category], ordering: str
) -> None:
    compared = 0
    for filters in _filters(catalog):
        url = f"{PRODUCT_LIST_URL}?{urlencode({**filters, 'ordering': ordering, 'page_size': 3})}"
        seen_forward: list[int] = []
        last = url
        while url:  # forward through the next links
            reader.answered.clear()
            lean = reader.lean(url)
            assert reader.answered == [url]
            assert lean == reader.drf(url)
            assert lean[0] == 200
            body = _body(lean)
            assert [list(row) for row in body["results"]] == [
                list(PRODUCT_FIELD_NAMES) for _ in body["results"]
            ]
            seen_forward += [row["id"] for row in body["results"]]
            compared += 1
            last = url
            url = _path(body["next"]) if body["next"] else ""
        expected = list(
            Product.objects.filter(pk__in=seen_forward)
            .order_by(*PRODUCT_ORDERINGS[ordering])
            .values_list("pk", flat=True)
        )
        assert seen_forward == expected  # every match once, in order
        url = last
        seen_backward: list[int] = []
        while url:  # and back through the previous links
            lean = reader.lean(url)
            assert lean == reader.drf(url)
            body = _body(lean)
            seen_backward = [row["id"] for row in body["results"]] + seen_backward
            compared += 1
            url = _path(body["previous"]) if body["previous"] else ""
        assert seen_backward == seen_forward
    assert compared > 40


@pytest.mark.usefixtures("postgresql")
def test_a_detail_is_the_drf_detail_byte_for_byte(
    reader: Reader, catalog: dict[str, Category]
) -> None:
    for product in Product.objects.all():
        url = product_url(product.pk)
        lean = reader.lean(url)
        assert lean[0] == 200
        assert list(_body(lean)) == list(PRODUCT_FIELD_NAMES)  # every declared field
        assert lean == reader.drf(url)
    assert len(reader.answered) == Product.objects.count()


@pytest.mark.parametrize(
    ("query", "status", "lean"),
    [
        ("in_stock=True", 200, True),  # other spellings DRF accepts: the same parser
        ("in_stock=1", 200, True),
        ("min_price=007", 200, True),
        ("page_size=0020", 200, True),
        ("category=", 200, True),  # DRF reads an empty value as absent
        ("q=item", 200, False),  # the name filter stays on the DRF path
        ("min_price=abc", 400, False),
        ("ordering=stock", 400, False),
        ("page_size=0", 400, False),
        ("page_size=101", 400, False),
        ("min_price=5&max_price=1", 400, False),
        ("category=999999", 400, False),
        ("cursor=garbage", 400, False),
    ],
)
def test_other_spellings_are_read_alike_and_bad_input_is_the_drf_400(
    reader: Reader, catalog: dict[str, Category], query: str, status: int, lean: bool
) -> None:
    url = f"{PRODUCT_LIST_URL}?{query}"
    served = reader.lean(url)
    assert reader.answered == ([url] if lean and connection.vendor == "postgresql" else [])
    assert served == reader.drf(url)
    assert served[0] == status
    if status == 400:
        assert set(_body(served)["error"]) == {"code", "message", "details"}


def test_a_missing_product_is_the_drf_404(reader: Reader) -> None:
    served = reader.lean(product_url(999_999))
    assert served[0] == 404
    assert reader.answered == []
    assert served == reader.drf(product_url(999_999))


@pytest.mark.usefixtures("postgresql")
def test_a_read_with_a_token_takes_the_drf_path_with_the_same_bytes(
    reader: Reader, catalog: dict[str, Category]
) -> None:
    url = f"{PRODUCT_LIST_URL}?ordering=price&page_size=5"
    with_token = client_for(UserFactory()).get(url)
    assert with_token.status_code == 200
    anonymous = reader.lean(url)
    assert reader.answered == [url]
    assert with_token.content == anonymous[1]


def test_the_lean_path_reads_what_was_just_written(
    reader: Reader, catalog: dict[str, Category]
) -> None:
    product = Product.objects.order_by("pk").first()
    assert product is not None
    before = _body(reader.lean(product_url(product.pk)))
    services.product_update(product=product, price=Decimal("77.70"), stock_quantity=0)
    after = _body(reader.lean(product_url(product.pk)))
    assert (before["price"], after["price"]) != ("77.70", "77.70")
    assert after["price"] == "77.70"
    assert after["in_stock"] is False
    assert after["updated_at"] != before["updated_at"]


@pytest.mark.usefixtures("postgresql")
@pytest.mark.parametrize(
    ("query", "queries"),
    [("", 1), ("ordering=price&min_price=1&in_stock=true", 1), ("category={home}", 2)],
)
def test_a_lean_page_costs_one_query_plus_one_for_a_category(
    reader: Reader,
    catalog: dict[str, Category],
    django_assert_num_queries: DjangoAssertNumQueries,
    query: str,
    queries: int,
) -> None:
    url = f"{PRODUCT_LIST_URL}?{query.format(home=catalog['home'].pk)}"
    detail = product_url(Product.objects.values_list("pk", flat=True)[0])
    with django_assert_num_queries(queries):
        assert reader.lean(url)[0] == 200
    with django_assert_num_queries(1):
        assert reader.lean(detail)[0] == 200
    assert len(reader.answered) == 2


def test_in_another_time_zone_django_answers_as_drf_does(
    reader: Reader, catalog: dict[str, Category]
) -> None:
    """PostgreSQL writes times in UTC only: in another zone the lean path leaves the read."""
    product = Product.objects.order_by("pk").first()
    assert product is not None
    with timezone.override("Europe/Paris"):
        lean = reader.lean(product_url(product.pk))
        assert reader.answered == []
        assert lean == reader.drf(product_url(product.pk))
    assert b"+01:00" in lean[1] or b"+02:00" in lean[1]


@pytest.mark.usefixtures("postgresql")
def test_on_postgresql_the_database_writes_the_rows(
    reader: Reader, catalog: dict[str, Category], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparisons above run on rows emporium_product_rows() wrote."""
    calls: list[str] = []
    real = selectors.fetch_prepared

    def spy(sql: str, params: Any, **kwargs: Any) -> Any:
        calls.append(sql)
        return real(sql, params, **kwargs)

    monkeypatch.setattr(selectors, "fetch_prepared", spy)
    product = Product.objects.order_by("pk").first()
    assert product is not None
    assert reader.lean(product_url(product.pk))[0] == 200
    assert reader.lean(f"{PRODUCT_LIST_URL}?category={catalog['home'].pk}")[0] == 200
    assert sum("emporium_product_rows" in sql for sql in calls) == 2
    row = selectors.product_row(product_id=product.pk)
    assert row is not None
    assert row.part_0.startswith(f'{{"id":{product.pk},"sku":')


def test_on_other_databases_django_answers_every_read(
    reader: Reader, catalog: dict[str, Category]
) -> None:
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL writes the rows: the lean path answers")
    product = Product.objects.order_by("pk").first()
    assert product is not None
    for url in (PRODUCT_LIST_URL, product_url(product.pk)):
        assert reader.lean(url) == reader.drf(url)
    assert reader.answered == []


@pytest.mark.usefixtures("postgresql")
@pytest.mark.parametrize("ordering", ["price", "-price"])
def test_a_cursor_beyond_a_price_bound_gives_the_drf_page(
    reader: Reader, catalog: dict[str, Category], ordering: str
) -> None:
    """Cursors from the unfiltered walk, reused under bounds on either side of them.

    The lean path keeps only the tighter of a cursor and a price bound on the same
    side (selectors._bounds); a cursor the API hands out for one filter may be sent
    with another, so every such page must still be DRF's.
    """
    cursors: list[str] = []
    url = f"{PRODUCT_LIST_URL}?{urlencode({'ordering': ordering, 'page_size': 2})}"
    while url:
        link = _body(reader.drf(url))["next"]
        url = _path(link) if link else ""
        if link:
            cursors.append(dict(parse_qsl(urlsplit(link).query))["cursor"])
        assert len(cursors) < 30  # 26 products, 2 a page: a walk that never ends fails here
    assert len(cursors) > 5
    bounds = [
        {"min_price": "12.30"},
        {"max_price": "4.99"},
        {"min_price": "0.50", "max_price": "4.99"},
        {"min_price": "100.00"},
        {"max_price": "0.50"},
    ]
    for cursor in cursors:
        for bound in bounds:
            query = {**bound, "ordering": ordering, "page_size": "2", "cursor": cursor}
            url = f"{PRODUCT_LIST_URL}?{urlencode(query)}"
            reader.answered.clear()
            lean = reader.lean(url)
            assert reader.answered == [url]
            assert lean == reader.drf(url)
