"""Search latency on 1,000,000 products (production profile, PostgreSQL).

Seeds its own database (a 3-level category tree of 10 x 10 x 10 categories and
``--products`` products whose names and descriptions are drawn from a fixed
vocabulary), starts the app under granian (2 workers, production settings),
and sends one- to three-word queries to ``GET /api/search/`` over HTTP, one at
a time on a keep-alive connection. It prints p50/p95/p99 per query length, each
split into queries full text answered and queries where it found nothing, which
also run the typo-tolerant fallback, beside a same-run reference: an uncached
``GET /api/products/<id>/`` through the same server, the floor of any request
that touches the database. nginx is not in the path; on loopback it adds well
under a millisecond (docs/performance_tuning.md, catalog figures).

    python -m bench.search [--products 1000000] [--queries 300] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import time
from typing import Any
from urllib.parse import urlencode

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


def seed(products: int, database: str = DATABASE) -> None:
    adjectives = "ARRAY[" + ",".join(f"'{word}'" for word in ADJECTIVES) + "]"
    nouns = "ARRAY[" + ",".join(f"'{word}'" for word in NOUNS) + "]"
    materials = "ARRAY[" + ",".join(f"'{word}'" for word in MATERIALS) + "]"
    # Indexes are built once after the load; the vector trigger runs on every row.
    # The vocabulary is counted once after the load too (its row trigger would
    # upsert every name's words one product at a time).
    common.psql(
        "DROP INDEX search_product_vector_idx; DROP INDEX search_product_name_trgm_idx;"
        "ALTER TABLE catalog_product DISABLE TRIGGER search_vocabulary_inserted;",
        database,
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
        database,
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
        database,
    )
    common.psql(
        "CREATE INDEX search_product_vector_idx ON catalog_product USING gin (search_vector);"
        "CREATE INDEX search_product_name_trgm_idx ON catalog_product "
        "USING gin (name gin_trgm_ops);",
        database,
    )
    common.psql(
        "SELECT search_vocabulary_rebuild();"
        "ALTER TABLE catalog_product ENABLE TRIGGER search_vocabulary_inserted;",
        database,
    )
    # VACUUM cannot share psql's implicit transaction with other statements.
    common.psql("VACUUM ANALYZE catalog_product", database)
    common.psql("ANALYZE catalog_category; ANALYZE search_vocabulary", database)


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


def misspelt(query: str, rng: random.Random) -> str:
    """The query with two neighbouring letters of one of its longer words swapped."""
    words = query.split(" ")
    long_words = [index for index, word in enumerate(words) if len(word) >= 5]
    if not long_words:
        return query
    index = rng.choice(long_words)
    word = words[index]
    at = rng.randint(1, len(word) - 2)
    words[index] = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    return " ".join(words)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def http_timings(base: str, paths: list[str]) -> tuple[list[float], list[dict[str, Any]]]:
    """Each path fetched in turn on one keep-alive connection: milliseconds and bodies.

    One request at a time, so a figure is what one search costs through HTTP,
    the app server, Django and the database, not time spent queueing behind
    other requests. Anything but a 200 stops the run.
    """
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    for path in paths[:20]:  # warm the connection, the workers and PostgreSQL's buffers
        connection.request("GET", path)
        connection.getresponse().read()
    samples: list[float] = []
    bodies: list[dict[str, Any]] = []
    for path in paths:
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        samples.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise SystemExit(f"{path} answered {response.status}: {body[:300]!r}")
        bodies.append(json.loads(body))
    connection.close()
    return samples, bodies


def search_path(query: str, **filters: Any) -> str:
    return "/api/search/?" + urlencode({"q": query, **filters})


def measure(env: dict[str, str], products: int, per_length: int) -> dict[str, Any]:
    """Searches over HTTP through the app server, beside a product read in the same run."""
    rng = random.Random(42)
    cases: list[tuple[str, list[str]]] = [
        (
            "reference: GET /api/products/<id>/",
            [f"/api/products/{rng.randint(1, products)}/" for _ in range(per_length)],
        )
    ]
    for words in (1, 2, 3):
        paths = [search_path(query) for query in queries(per_length, words, rng)]
        cases.append((f"search, {words} word{'s' if words > 1 else ''}", paths))
    cases.append(
        (
            "search, 2 words + category + in_stock",
            [
                search_path(query, category=rng.randint(1, 10), in_stock="true")
                for query in queries(per_length, 2, rng)
            ],
        )
    )
    cases.append(
        (
            "search, 2 words, one misspelt",
            [search_path(misspelt(query, rng)) for query in queries(per_length, 2, rng)],
        )
    )
    cases.append(
        (
            "search, 1 misspelt word",
            [search_path(query) for query in ["headphnoes", "laptpo", "keybaord"] * 10],
        )
    )
    port = common.free_port()
    # Catalog reads answered from the cache would not be a database reference.
    app_env = {**env, "CATALOG_CACHE_ENABLED": "false"}
    figures: dict[str, Any] = {}
    print()
    print(
        f"{'measured (HTTP, one request at a time)':<44}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'x ref p95':>10}"
    )
    with common.app_server(
        app_env, kind="granian", port=port, workers=2, ready_path="/api/categories/"
    ) as base:
        reference_p95 = 0.0
        for name, paths in cases:
            samples, bodies = http_timings(base, paths)
            p95 = percentile(samples, 0.95)
            reference_p95 = reference_p95 or p95
            print(
                f"{name:<44}{len(samples):>5}{statistics.median(samples):>9.2f}{p95:>9.2f}"
                f"{percentile(samples, 0.99):>9.2f}{p95 / reference_p95:>10.1f}"
            )
            figures[name] = {
                "n": len(samples),
                "p50_ms": statistics.median(samples),
                "p95_ms": p95,
                "p99_ms": percentile(samples, 0.99),
            }
            if name.startswith("search"):
                # The same figures split by outcome: when full text finds nothing,
                # the request also runs the typo-tolerant fallback and the
                # suggestions (each bounded by a statement timeout).
                full_text = [body["match"] == "full_text" and body["count"] > 0 for body in bodies]
                found = [ms for ms, hit in zip(samples, full_text, strict=True) if hit]
                fallback = [ms for ms, hit in zip(samples, full_text, strict=True) if not hit]
                for label, part in (("  found by full text", found), ("  fallback ran", fallback)):
                    if part:
                        print(
                            f"{label:<44}{len(part):>5}{statistics.median(part):>9.2f}"
                            f"{percentile(part, 0.95):>9.2f}{percentile(part, 0.99):>9.2f}"
                        )
                figures[name]["found_by_full_text"] = len(found)
                figures[name]["p95_ms_found_by_full_text"] = (
                    percentile(found, 0.95) if found else None
                )
                figures[name]["p95_ms_fallback_ran"] = (
                    percentile(fallback, 0.95) if fallback else None
                )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300, help="per query length")
    parser.add_argument("--keep", action="store_true", help="reuse a seeded database")
    args = parser.parse_args()

    database_url = (
        common.database_url(DATABASE) if args.keep else common.recreate_database(DATABASE)
    )
    env = common.production_env(database_url)
    # Also with --keep: a kept database gets the migrations added since it was seeded.
    common.manage(env, "migrate", "--no-input", "-v0")
    if not args.keep:
        started = time.monotonic()
        seed(args.products)
        print(f"seeded {args.products:,} products in {time.monotonic() - started:.0f} s")
    with common.bench_lock():
        figures = measure(env, args.products, args.queries)
    path = common.save("search", {"products": args.products, "figures": figures})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
