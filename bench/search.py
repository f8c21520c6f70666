"""Search latency on 1,000,000 products (production profile, PostgreSQL).

Seeds its own database (a 3-level category tree of 10 x 10 x 10 categories and
``--products`` products whose names and descriptions are drawn from a fixed
vocabulary), then runs one- to three-word queries through the same selector
the API calls (``emporium.search.selectors.product_search``) and prints
p50/p95/p99 per query length, beside a same-run reference: the catalog's
primary-key product read through the ORM, which is the floor of any request
that touches the database.

This measures the search itself (the SQL and the Python around it), not HTTP:
HTTP and nginx cost the same per request as on the catalog paths measured by
``bench.catalog``.

    python -m bench.search [--products 1000000] [--queries 300] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from typing import Any

from bench import common

DATABASE = "emporium_bench_search"

ADJECTIVES = [
    "wireless",
    "red",
    "blue",
    "black",
    "white",
    "steel",
    "wooden",
    "leather",
    "compact",
    "portable",
    "vintage",
    "smart",
    "organic",
    "electric",
    "waterproof",
    "classic",
    "ergonomic",
    "foldable",
    "silent",
    "heavy",
    "light",
    "premium",
    "mini",
    "large",
    "soft",
    "bright",
    "green",
    "yellow",
    "silver",
    "golden",
    "rugged",
    "slim",
]
NOUNS = [
    "headphones",
    "laptop",
    "stand",
    "lamp",
    "chair",
    "table",
    "kettle",
    "toaster",
    "blender",
    "speaker",
    "camera",
    "backpack",
    "bottle",
    "jacket",
    "shoes",
    "watch",
    "keyboard",
    "mouse",
    "monitor",
    "charger",
    "cable",
    "router",
    "drill",
    "hammer",
    "spade",
    "tent",
    "stove",
    "mug",
    "teapot",
    "pillow",
    "blanket",
    "scarf",
    "sofa",
    "shelf",
    "mirror",
    "clock",
    "radio",
    "printer",
    "tablet",
    "phone",
    "case",
    "guitar",
    "piano",
    "drum",
    "bicycle",
    "helmet",
    "glove",
]
MATERIALS = [
    "cotton",
    "wool",
    "steel",
    "aluminium",
    "bamboo",
    "glass",
    "ceramic",
    "oak",
    "walnut",
    "silicone",
]


def seed(products: int) -> None:
    adjectives = "ARRAY[" + ",".join(f"'{word}'" for word in ADJECTIVES) + "]"
    nouns = "ARRAY[" + ",".join(f"'{word}'" for word in NOUNS) + "]"
    materials = "ARRAY[" + ",".join(f"'{word}'" for word in MATERIALS) + "]"
    # Indexes are built once after the load; the vector trigger runs on every row.
    common.psql(
        "DROP INDEX search_product_vector_idx; DROP INDEX search_product_name_trgm_idx;",
        DATABASE,
    )
    common.psql(
        """
        INSERT INTO catalog_category (id, name, parent_id, path, depth, created_at, updated_at)
        SELECT i, 'Department ' || i, NULL, i || '/', 0, now(), now()
          FROM generate_series(1, 10) AS i;
        INSERT INTO catalog_category (id, name, parent_id, path, depth, created_at, updated_at)
        SELECT 10 + (d - 1) * 10 + s, 'Section ' || d || '.' || s, d,
               d || '/' || (10 + (d - 1) * 10 + s) || '/', 1, now(), now()
          FROM generate_series(1, 10) AS d, generate_series(1, 10) AS s;
        INSERT INTO catalog_category (id, name, parent_id, path, depth, created_at, updated_at)
        SELECT 110 + (p - 11) * 10 + a, 'Aisle ' || p || '.' || a, p,
               parent.path || (110 + (p - 11) * 10 + a) || '/', 2, now(), now()
          FROM generate_series(11, 110) AS p, generate_series(1, 10) AS a,
               catalog_category AS parent WHERE parent.id = p;
        SELECT setval(pg_get_serial_sequence('catalog_category', 'id'), 1110);
        """,
        DATABASE,
    )
    common.psql(
        f"""
        INSERT INTO catalog_product (name, description, sku, price, stock_quantity,
            category_id, attributes, review_count, rating_total, created_at, updated_at)
        SELECT initcap(a[1 + i % {len(ADJECTIVES)}]) || ' ' || n[1 + (i / 7) % {len(NOUNS)}]
                   || ' ' || m[1 + (i / 3) % {len(MATERIALS)}] || ' ' || (i % 997),
               'A ' || a[1 + (i / 11) % {len(ADJECTIVES)}] || ' ' || n[1 + (i / 13) % {len(NOUNS)}]
                   || ' made of ' || m[1 + i % {len(MATERIALS)}]
                   || ', for everyday use. Model ' || i || '.',
               'BENCH-' || i, (1 + i % 50000) / 100.0, i % 40, 111 + i % 1000,
               '{{}}'::jsonb, 0, 0, now(), now()
          FROM generate_series(1, {products}) AS i,
               (SELECT {adjectives} AS a, {nouns} AS n, {materials} AS m) AS words
        """,
        DATABASE,
    )
    common.psql(
        "CREATE INDEX search_product_vector_idx ON catalog_product USING gin (search_vector);"
        "CREATE INDEX search_product_name_trgm_idx ON catalog_product "
        "USING gin (name gin_trgm_ops);",
        DATABASE,
    )
    # VACUUM cannot share psql's implicit transaction with other statements.
    common.psql("VACUUM ANALYZE catalog_product", DATABASE)
    common.psql("ANALYZE catalog_category", DATABASE)


def queries(count: int, words: int, rng: random.Random) -> list[str]:
    vocabulary = ADJECTIVES + NOUNS + MATERIALS
    made = []
    for _ in range(count):
        picked = rng.sample(vocabulary, words)
        # Half the queries are still being typed: the last word is a prefix.
        if rng.random() < 0.5 and len(picked[-1]) > 4:
            picked[-1] = picked[-1][: rng.randint(3, len(picked[-1]) - 1)]
        made.append(" ".join(picked))
    return made


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(products: int, per_length: int) -> dict[str, Any]:
    import django

    django.setup()
    from emporium.catalog.models import Product
    from emporium.search.selectors import product_search

    rng = random.Random(42)
    figures: dict[str, Any] = {}

    def timed(run: Any, inputs: list[Any]) -> list[float]:
        for item in inputs[:20]:  # warm caches and the connection
            run(item)
        samples = []
        for item in inputs:
            started = time.perf_counter()
            run(item)
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    ids = [rng.randint(1, products) for _ in range(per_length)]
    reference = timed(lambda pk: Product.objects.select_related("category").get(pk=pk), ids)
    rows = [("reference: product by id (ORM)", reference)]
    for words in (1, 2, 3):
        samples = timed(lambda q: product_search(query=q), queries(per_length, words, rng))
        rows.append((f"search, {words} word{'s' if words > 1 else ''}", samples))
    filtered = timed(
        lambda q: product_search(query=q, category_id=rng.randint(1, 10), in_stock=True),
        queries(per_length, 2, rng),
    )
    rows.append(("search, 2 words + category + in_stock", filtered))
    typos = timed(lambda q: product_search(query=q), ["headphnoes", "laptpo", "keybaord"] * 10)
    rows.append(("search, misspelt (trigram fallback)", typos))

    print()
    print(f"{'measured':<42}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'x ref p95':>11}")
    reference_p95 = percentile(reference, 0.95)
    for name, samples in rows:
        p95 = percentile(samples, 0.95)
        print(
            f"{name:<42}{len(samples):>6}{statistics.median(samples):>9.2f}{p95:>9.2f}"
            f"{percentile(samples, 0.99):>9.2f}{p95 / reference_p95:>11.1f}"
        )
        figures[name] = {
            "n": len(samples),
            "p50_ms": statistics.median(samples),
            "p95_ms": p95,
            "p99_ms": percentile(samples, 0.99),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300, help="per query length")
    parser.add_argument("--keep", action="store_true", help="reuse a seeded database")
    args = parser.parse_args()

    database_url = (
        common.recreate_database(DATABASE)
        if not args.keep
        else (
            f"postgres://{common.PG['user']}:{common.PG['password']}@{common.PG['host']}:"
            f"{common.PG['port']}/{DATABASE}"
        )
    )
    env = common.production_env(database_url)
    if not args.keep:
        common.manage(env, "migrate", "--no-input", "-v0")
        started = time.monotonic()
        seed(args.products)
        print(f"seeded {args.products:,} products in {time.monotonic() - started:.0f} s")
    os.environ.update(env)
    with common.bench_lock():
        figures = measure(args.products, args.queries)
    path = common.save("search", {"products": args.products, "figures": figures})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
