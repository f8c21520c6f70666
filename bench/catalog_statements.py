"""What a catalog read costs PostgreSQL: unprepared against prepared, generic against custom plans.

Run with the catalog benchmark's production environment, on the database it
seeded (docs/db_optimization.md shows the variables):

    python -m bench.catalog_statements [--reads 3000] [--pages 600]

1. The server CPU of one product read (the lean path's statement), read from
   /proc/<backend pid>/stat around N reads with random ids: sent as Django sends
   queries (parameters bound on the client, planned every time) against
   ``core.db.prepared.fetch_prepared`` (a prepared statement), beside a trivial
   ``SELECT 1``-like statement prepared, as the floor of a round trip.
2. For the ids query of each list page the lean path sends for the benchmark's
   paths, ``EXPLAIN (ANALYZE, BUFFERS) EXECUTE`` under a forced generic plan
   and under a custom plan (planning time shown apart), grouped by shape:
   which shapes a prepared statement may keep one plan for.
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common


def _backend_seconds(pid: int) -> float:
    return common.process_cpu()[pid][1]


def reads(count: int) -> None:
    from django.db import connection

    from emporium.catalog import selectors
    from emporium.core.db.prepared import fetch_prepared

    ids = list(selectors.Product.objects.values_list("id", flat=True))
    chosen = [random.choice(ids) for _ in range(count)]
    statement = f"{selectors._RENDERED}(ARRAY[%s]::bigint[])"
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid

    def django_cursor(product_id: int) -> Any:
        with connection.cursor() as cursor:
            cursor.execute(statement, [product_id])
            return cursor.fetchall()

    cases = {
        "product read, Django's cursor (planned each time)": django_cursor,
        "product read, fetch_prepared": lambda i: fetch_prepared(statement, [i]),
        "reference: SELECT %s::int, prepared": lambda i: fetch_prepared("SELECT %s::int", [i]),
    }
    for name, run in cases.items():
        for product_id in chosen[:50]:
            run(product_id)
        server, client = _backend_seconds(pid), time.process_time()
        for product_id in chosen:
            run(product_id)
        server_ms = 1000 * (_backend_seconds(pid) - server) / count
        client_ms = 1000 * (time.process_time() - client) / count
        print(f"{name:<52} PostgreSQL {server_ms:.3f} ms  Python {client_ms:.3f} ms")


def pages(count: int) -> None:
    import psycopg
    from django.db import connection
    from django.test import RequestFactory

    from emporium.catalog import fast_path, selectors

    sent: list[tuple[str, list[Any]]] = []
    real = selectors.fetch_prepared

    def spy(sql: str, params: Any, **kwargs: Any) -> Any:
        sent.append((sql, list(params)))
        return real(sql, params, **kwargs)

    selectors.fetch_prepared = spy
    folder = Path(tempfile.mkdtemp(prefix="emporium-bench-statements-"))
    subprocess.run([sys.executable, "-m", "bench.catalog_paths", str(folder)], check=True)
    factory = RequestFactory()
    for path in (folder / "uncached_list.txt").read_text().split()[:count]:
        fast_path.product_list(factory.get(path, HTTP_HOST="127.0.0.1"))
    settings = connection.settings_dict
    explain = psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"],
        password=settings["PASSWORD"], dbname=settings["NAME"], autocommit=True,
    )  # fmt: skip
    literal = psycopg.ClientCursor(explain)
    by_shape: dict[str, list[dict[str, tuple[float, float, int]]]] = collections.defaultdict(list)
    for sql, params in sent:
        if "ARRAY(SELECT" not in sql:
            continue  # the subtree look-up and details
        inner = sql[sql.index("ARRAY(") + 6 : -2]
        pieces = inner.split("%s")
        prepared = "".join(
            piece + (f"${number}" if number < len(pieces) else "")
            for number, piece in enumerate(pieces, start=1)
        ).replace("%%", "%")
        values = ", ".join(literal.mogrify("%s", [value]) for value in params)
        costs = {}
        for mode in ("force_generic_plan", "force_custom_plan"):
            explain.execute(f"SET plan_cache_mode = {mode}")
            explain.execute(f"PREPARE page AS {prepared}")
            found = explain.execute(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE page({values})"
            ).fetchone()
            assert found is not None  # noqa: S101 - EXPLAIN always answers
            plan = found[0][0]
            explain.execute("DEALLOCATE page")
            costs[mode] = (
                plan["Planning Time"],
                plan["Execution Time"],
                plan["Plan"].get("Shared Hit Blocks", 0),
            )
        where = inner.split(" AS p", 1)[1]
        shape = [
            name
            for name, text in (
                ("1 category", "category_id = %s"),
                ("subtree", "ANY("),
                ("min", "price >="),
                ("max", "price <="),
                ("stock", "stock_quantity"),
                ("cursor", ") <"),
                ("cursor", ") >"),
            )
            if text in where
        ]
        ordering = re.findall(r'ORDER BY p\."?(\w+)', where)[0]
        by_shape[f"{ordering}: {', '.join(shape) or 'no filter'}"].append(costs)
    print(f"\n{'ids query shape':<42}{'n':>4}{'generic ms':>12}{'buffers':>9}"
          f"{'custom plan ms':>16}{'+ run ms':>10}{'buffers':>9}")  # fmt: skip
    ranked = sorted(by_shape.items(), key=lambda item: -len(item[1]))
    for label, runs in ranked:
        mean = [
            [sum(run[mode][field] for run in runs) / len(runs) for field in range(3)]
            for mode in ("force_generic_plan", "force_custom_plan")
        ]
        print(
            f"{label:<42}{len(runs):>4}{mean[0][1]:>12.2f}{mean[0][2]:>9.0f}"
            f"{mean[1][0]:>16.2f}{mean[1][1]:>10.2f}{mean[1][2]:>9.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--pages", type=int, default=600)
    args = parser.parse_args()
    import django

    django.setup()
    reads(args.reads)
    pages(args.pages)


if __name__ == "__main__":
    main()
