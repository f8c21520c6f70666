"""The product indexes: none redundant, and every look-up by category served by one.

``Product.category`` has no index of its own (``db_index=False``): the three
``product_cat_*`` indexes start with ``category_id``. These tests fail if one
of those look-ups loses its index (say, a ``product_cat_*`` index dropped
because no list page used it) or if an index that another one covers comes
back. PostgreSQL only: the embedded profile's SQLite has no planner to ask
the same question of.

The plans are asked for with sequential scans turned off, so they say whether
an index *can* serve the condition on a test-sized table; which index the
planner prefers on the 100,000-product catalog is in docs/db_optimization.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from django.db import connection
from django.db.models.deletion import Collector

from emporium.catalog import selectors
from emporium.catalog.models import Category, Product, ProductImport, ProductImportError
from emporium.core.tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

# For each btree index but partial ones: its name, whether it is unique, its key
# columns, and whether it uses a pattern operator class (LIKE 'prefix%' under a
# non-C collation).
_BTREE_INDEXES = """
    SELECT i.relname, x.indisunique,
           ARRAY(SELECT a.attname
                   FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                   JOIN pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                  ORDER BY k.n),
           EXISTS (SELECT 1 FROM unnest(x.indclass::oid[]) AS c(oid)
                     JOIN pg_opclass AS o ON o.oid = c.oid
                    WHERE o.opcname LIKE '%%pattern_ops')
      FROM pg_index AS x
      JOIN pg_class AS i ON i.oid = x.indexrelid
      JOIN pg_class AS t ON t.oid = x.indrelid
      JOIN pg_am AS m ON m.oid = i.relam
     WHERE t.relname = %s AND m.amname = 'btree' AND x.indpred IS NULL
"""


@pytest.fixture(autouse=True)
def postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("asks PostgreSQL's catalog and planner")


def _btree_indexes(table: str) -> list[tuple[str, bool, list[str], bool]]:
    with connection.cursor() as cursor:
        cursor.execute(_BTREE_INDEXES, [table])
        return [(name, unique, list(columns), pattern) for name, unique, columns, pattern in cursor]


@pytest.mark.parametrize("model", [Product, ProductImportError])
def test_no_plain_btree_index_is_covered_by_another(model: type[Any]) -> None:
    indexes = _btree_indexes(model._meta.db_table)
    covered = [
        (name, other)
        for name, unique, columns, _ in indexes
        if not unique
        for other, _, other_columns, _ in indexes
        if other != name and other_columns[: len(columns)] == columns
    ]
    assert covered == []


def test_no_sku_index_for_prefix_matches() -> None:
    indexes = _btree_indexes(Product._meta.db_table)
    assert [name for name, _, _, pattern in indexes if pattern] == []
    assert [(name, unique) for name, unique, columns, _ in indexes if columns == ["sku"]] == [
        ("catalog_product_sku_key", True)
    ]


def _plan(sql: str, params: Sequence[Any], *, in_index_order: bool = False) -> str:
    """The statement's plan with sequential scans off (the test tables are tiny).

    ``in_index_order`` also turns bitmap scans and sorts off, so the plan shows
    whether an index gives the rows in the order asked whatever the table's
    statistics say: with a few rows per category analysed, a bitmap scan and a
    sort cost less, and a plan still sorts if no index has that order.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        if in_index_order:
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def _sql_of(queryset: Any) -> tuple[str, Sequence[Any]]:
    sql, params = queryset.query.sql_with_params()
    return str(sql), params


def _protect_check(category: Category) -> tuple[str, Sequence[Any]]:
    """The query Django's collector runs for PROTECT when a category is deleted."""
    collector = Collector(using="default")
    relation = next(
        related for related in Category._meta.related_objects if related.related_model is Product
    )
    return _sql_of(collector.related_objects(Product, [relation.field], [category]))


LOOKUPS: dict[str, Callable[[Category], tuple[str, Sequence[Any]]]] = {
    # What PostgreSQL runs at commit for the foreign key when a category is
    # deleted (NO ACTION): one look-up per deleted category.
    "foreign key check on deleting a category": lambda category: (
        "SELECT 1 FROM ONLY catalog_product AS x"
        " WHERE %s OPERATOR(pg_catalog.=) category_id FOR KEY SHARE OF x",
        [category.pk],
    ),
    "PROTECT's check on deleting a category": _protect_check,
    # services._category_products_bump, on renaming a category.
    "a renamed category's products": lambda category: _sql_of(
        Product.objects.filter(category_id=category.pk).values_list("pk", flat=True)[:1001]
    ),
    # search_category_renamed() (emporium/search/sql/product_vector.sql).
    "the search vectors of a renamed category's products": lambda category: (
        "UPDATE catalog_product SET search_vector = NULL WHERE category_id = %s",
        [category.pk],
    ),
    # selectors.product_list's subtree filter (the ORM path).
    "the product list's category subtree": lambda category: _sql_of(
        selectors.product_list(category_id=category.pk)[:21]
    ),
}


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_every_look_up_by_category_is_an_index_condition(lookup: str) -> None:
    category = CategoryFactory()
    ProductFactory.create_batch(3, category=category)

    plan = _plan(*LOOKUPS[lookup](category))

    assert re.search(r"Index Cond: .*category_id", plan), plan
    assert "product_cat_" in plan, plan


@pytest.mark.parametrize("ordering", sorted(selectors.PRODUCT_ORDERINGS))
def test_a_leaf_page_of_the_lean_path_is_one_range_of_its_leaf_index(
    ordering: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    category = CategoryFactory()
    ProductFactory.create_batch(3, category=category)
    sent: list[tuple[str, Sequence[Any]]] = []
    monkeypatch.setattr(
        selectors, "fetch_prepared", lambda sql, params, **_: sent.append((sql, params)) or []
    )

    selectors.product_page_rows(category_ids=[category.pk], ordering=ordering)
    plan = _plan(*sent[0], in_index_order=True)

    column = selectors.PRODUCT_ORDERINGS[ordering][0].lstrip("-").removesuffix("_at")
    assert f"using product_cat_{column}_id_idx" in plan, plan
    assert "Sort" not in plan, plan


def test_an_imports_errors_are_read_and_deleted_through_the_row_index() -> None:
    product_import = ProductImport.objects.create(
        file_format="csv", encoding="utf-8", content_sha256="0" * 64, size_bytes=1, stored_name="x"
    )
    listed = _sql_of(ProductImportError.objects.filter(product_import=product_import))
    cascaded = _sql_of(
        ProductImportError.objects.filter(product_import__in=[product_import]).only("pk")
    )

    for sql, params in (listed, cascaded):
        plan = _plan(sql, params)
        assert "product_import_error_row_idx" in plan, plan
        assert re.search(r"Index Cond: .*product_import_id", plan), plan
