"""fetch_prepared: hot reads as server-side prepared statements on Django's own connection.

What the server keeps is read back from ``pg_prepared_statements`` on the same
connection, through Django's cursor. Statements outlive the test transaction
(they belong to the session), so each test names its query with a marker of
its own.
"""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from pytest_django import DjangoAssertNumQueries

from emporium.catalog.models import Product
from emporium.core.db.prepared import fetch_prepared
from emporium.core.tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

TABLE = Product._meta.db_table


@pytest.fixture
def _postgresql(database_url: str) -> None:
    assert connection.vendor == "postgresql"


on_postgresql = pytest.mark.usefixtures("_postgresql")


@pytest.fixture
def marker() -> str:
    """A column alias no other query on this connection uses."""
    return f"marker_{uuid.uuid4().hex}"


@pytest.fixture
def products() -> list[Product]:
    category = CategoryFactory()
    made = [
        ProductFactory(
            name=name,
            price=Decimal(price),
            stock_quantity=stock,
            category=category,
            attributes=attributes,
        )
        for name, price, stock, attributes in [
            ("Item 50%", "0.50", 0, {}),
            ("Item b", "12.30", 3, {"size": "L", "n": [1, 2.5, None]}),
            ("Other", "4.99", 7, {"ünï": "ç"}),
            ("Item c", "100.00", 1, {}),
        ]
    ]
    Product.objects.filter(pk=made[1].pk).update(
        created_at=datetime.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.UTC)
    )
    return made


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def django_rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def test_it_returns_the_rows_of_a_parameterised_query(products: list[Product]) -> None:
    sql = f"SELECT id, name FROM {TABLE} WHERE price >= %s AND stock_quantity > %s ORDER BY id"  # noqa: S608

    rows = fetch_prepared(sql, [Decimal("4.99"), 0])

    assert [tuple(row) for row in rows] == [
        (product.pk, product.name) for product in products if product.name != "Item 50%"
    ]
    assert [tuple(row) for row in fetch_prepared(sql, [Decimal("50"), 0], prepare=False)] == [
        (products[3].pk, "Item c")
    ]


@on_postgresql
def test_a_query_run_through_it_is_prepared_on_the_connection(marker: str) -> None:
    assert not any(marker in statement for statement in prepared_statements())

    assert fetch_prepared(f"SELECT %s::int + 1 AS {marker}", [41]) == [(42,)]

    assert [s for s in prepared_statements() if marker in s] == [f"SELECT $1::int + 1 AS {marker}"]


@on_postgresql
def test_it_runs_on_djangos_own_connection(marker: str) -> None:
    ((django_pid,),) = django_rows("SELECT pg_backend_pid()", [])

    ((prepared_pid,),) = fetch_prepared(f"SELECT pg_backend_pid() AS {marker}", [])
    ((unprepared_pid,),) = fetch_prepared(
        f"SELECT pg_backend_pid() AS {marker}_u", [], prepare=False
    )

    assert prepared_pid == unprepared_pid == django_pid
    assert any(marker in statement for statement in prepared_statements())


@on_postgresql
@pytest.mark.parametrize("prepare", [True, False])
def test_it_returns_the_rows_djangos_cursor_returns(
    products: list[Product], marker: str, prepare: bool
) -> None:
    sql = (
        f"SELECT id, name, price, created_at, attributes, stock_quantity > %s AS {marker}, "  # noqa: S608
        f"NULL::text, %s::date FROM {TABLE} "
        "WHERE name LIKE 'Item%%' AND price <= %s ORDER BY price, id"
    )
    for params in (
        [0, datetime.date(2026, 5, 6), Decimal("100.00")],
        [2, datetime.date(2020, 1, 1), Decimal("12.30")],
    ):
        expected = django_rows(sql, params)
        assert expected  # a real comparison, not [] == []
        # Past five runs PostgreSQL may switch a prepared statement to its generic plan.
        for _ in range(7):
            assert [tuple(row) for row in fetch_prepared(sql, params, prepare=prepare)] == expected
    assert any(marker in statement for statement in prepared_statements()) is prepare


@on_postgresql
def test_it_is_counted_by_assert_num_queries(
    products: list[Product], marker: str, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    sql = f"SELECT id AS {marker} FROM {TABLE} WHERE id = %s"  # noqa: S608

    with django_assert_num_queries(1) as captured:
        rows = fetch_prepared(sql, [products[0].pk])

    assert rows == [(products[0].pk,)]
    assert marker in captured.captured_queries[0]["sql"]


@on_postgresql
def test_prepare_false_is_not_prepared(marker: str) -> None:
    assert fetch_prepared(f"SELECT %s::int AS {marker}", [7], prepare=False) == [(7,)]

    assert not any(marker in statement for statement in prepared_statements())


@on_postgresql
def test_nothing_is_prepared_with_prepared_statements_turned_off(marker: str) -> None:
    with override_settings(DATABASE_PREPARED_STATEMENTS=False):
        assert fetch_prepared(f"SELECT %s::int AS {marker}", [7]) == [(7,)]

    assert not any(marker in statement for statement in prepared_statements())


@on_postgresql
def test_djangos_own_queries_stay_unprepared(products: list[Product], marker: str) -> None:
    fetch_prepared(f"SELECT 1 AS {marker}", [])  # the connection now prepares when asked
    before = prepared_statements()
    assert any(marker in statement for statement in before)

    for _ in range(10):  # more than psycopg's automatic threshold of 5
        django_rows(f"SELECT id FROM {TABLE} WHERE id = %s", [products[0].pk])  # noqa: S608
        list(Product.objects.filter(name="Other").values_list("pk", flat=True))

    assert sorted(prepared_statements()) == sorted(before)
