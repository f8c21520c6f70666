"""EXPLAIN (ANALYZE, BUFFERS) of every product-list query shape, as the API builds it.

Run against the benchmark's seeded database (bench.catalog keeps it), on the
production profile with per-run secrets as the benchmarks configure it:

    python -m bench.catalog_explain [--plans] [--database emporium_bench_catalog]

Each query is the page-of-21 fetch the keyset paginator runs (20 rows + one
to know whether there is a next page), built by the real selector; the cursor
cases seek past a product in the middle of the ordering. Prints the median of
five executions' "Execution Time" and, with --plans, the last plan.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import django

from bench import common


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plans", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument(
        "--ddl",
        action="append",
        default=[],
        help="SQL run first (e.g. DROP INDEX ... to see the plan without it); rolled back",
    )
    parser.add_argument("--database", default="emporium_bench_catalog")
    args = parser.parse_args()
    os.environ.update(common.production_env(common.database_url(args.database)))
    django.setup()
    from django.db import connection, transaction
    from django.db.models import QuerySet

    from emporium.catalog.models import Category, Product
    from emporium.catalog.selectors import PRODUCT_ORDERINGS, product_list
    from emporium.core.pagination import keyset_filter

    middle = Product.objects.order_by("id")[Product.objects.count() // 2]
    leaf = Category.objects.filter(children__isnull=True).order_by("id").first()
    top = Category.objects.filter(parent__isnull=True).order_by("id").first()
    assert leaf is not None  # noqa: S101 - seeded data
    assert top is not None  # noqa: S101

    def seek(queryset: QuerySet[Product], ordering: str) -> QuerySet[Product]:
        fields = PRODUCT_ORDERINGS[ordering]
        values = [getattr(middle, field.lstrip("-")) for field in fields]
        return queryset.filter(keyset_filter(fields, values, forward=True))

    cases: dict[str, Callable[[], QuerySet[Product]]] = {}

    def first_page(ordering: str) -> Callable[[], QuerySet[Product]]:
        return lambda: product_list(ordering=ordering)

    def sought_page(ordering: str) -> Callable[[], QuerySet[Product]]:
        return lambda: seek(product_list(ordering=ordering), ordering)

    for ordering in PRODUCT_ORDERINGS:
        cases[f"ordering={ordering}, page 1"] = first_page(ordering)
        cases[f"ordering={ordering}, cursor"] = sought_page(ordering)
    cases["top category (subtree), default ordering"] = lambda: product_list(category_id=top.pk)
    cases["leaf category, default ordering"] = lambda: product_list(category_id=leaf.pk)
    cases["leaf category, ordering=price"] = lambda: product_list(
        category_id=leaf.pk, ordering="price"
    )
    cases["top category, ordering=price, cursor"] = lambda: seek(
        product_list(category_id=top.pk, ordering="price"), "price"
    )
    cases["min_price=100 max_price=120, default ordering"] = lambda: product_list(
        min_price=Decimal(100), max_price=Decimal(120)
    )
    cases["min_price=100 max_price=120, ordering=price"] = lambda: product_list(
        min_price=Decimal(100), max_price=Decimal(120), ordering="price"
    )
    cases["in_stock=true, default ordering"] = lambda: product_list(in_stock=True)
    cases["in_stock=false, default ordering"] = lambda: product_list(in_stock=False)
    cases["leaf category, in_stock, price range, cursor"] = lambda: seek(
        product_list(
            category_id=leaf.pk, in_stock=True, min_price=Decimal(10), max_price=Decimal(500)
        ),
        "-created_at",
    )
    cases["offset 99,980 (what an offset paginator runs)"] = lambda: product_list()[99_980:]

    with transaction.atomic():
        with connection.cursor() as cursor:
            for statement in args.ddl:
                cursor.execute(statement)
            if args.ddl:
                cursor.execute("ANALYZE catalog_product")
        explain_all(cases, only=args.only, plans=args.plans)
        transaction.set_rollback(True)


def explain_all(cases: dict[str, Callable[[], Any]], *, only: str, plans: bool) -> None:
    from django.db import connection

    for name, build in cases.items():
        if only and only not in name:
            continue
        queryset = build()
        sql, params = (
            queryset[:21].query.sql_with_params()
            if "offset" not in name
            else (*queryset.query.sql_with_params(),)
        )
        if "offset" in name:
            sql += " LIMIT 21"
        times: list[float] = []
        plan: list[Any] = []
        with connection.cursor() as cursor:
            for _ in range(5):
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
                plan = [row[0] for row in cursor.fetchall()]
                times.append(float(plan[-1].split(":")[1].split()[0]))
        print(f"{name:<52} median {statistics.median(times):8.3f} ms")
        if plans:
            print("    " + "\n    ".join(plan) + "\n")


if __name__ == "__main__":
    main()
