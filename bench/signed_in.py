"""The signed-in shopper: authenticated reads and cart writes beside same-run references.

Production settings, granian with 2 workers of one thread, 10,000 demo products,
200 customers with tokens, the first with a cart of two lines, a wishlist of two
and 30 orders. ``wrk -t2 -c64`` (``bench/lua/requests.lua``) measures each
request for a few seconds, with CPU per request by process (app server,
PostgreSQL backends, Redis) from ``/proc``, and two references in the same run:

* a catalog read (list, detail, search) with a valid token against the same
  read without one (target >= 80 %);
* the customer's own reads and cart writes against a minimal Django view
  (``bench/minimal_django.py``: no middleware, no database) answering the same
  bytes from memory under the same app server with the same workers (targets:
  profile, cart, wishlist >= 50 %; orders list and one order >= 25 %; adding
  to the cart and changing a quantity >= 30 %).

    python -m bench.signed_in [--seconds 6] [--connections 64]
    make bench SCENARIO=signed-in

The load phases take /tmp/emporium-bench.lock, as every benchmark here.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import common
from bench.shoppers import fresh_tokens, seed_catalog, seed_shoppers

DATABASE = "emporium_bench_signed_in"
SCRIPT = common.ROOT / "bench" / "lua" / "requests.lua"
WORKERS = 2
SEARCH_WORDS = ["steel", "classic", "wireless", "cotton", "lamp", "tea", "monitor", "shoe"]

# name -> (what it is compared with, target ratio)
CATALOG = {
    "products list": 0.80,
    "product detail": 0.80,
    "search": 0.80,
}
OWN = {
    "GET /api/auth/me/": 0.50,
    "GET /api/cart/": 0.50,
    "GET /api/wishlist/": 0.50,
    "GET /api/orders/ (20 with items)": 0.25,
    "GET /api/orders/<id>/": 0.25,
    "POST /api/cart/items/": 0.30,
    "PATCH /api/cart/items/<id>/": 0.30,
}


def _line(method: str, path: str, bearer: str | None, body: Any = None) -> str:
    return "\t".join([method, path, bearer or "-", "-" if body is None else json.dumps(body)])


def _fetch(base: str, line: str) -> bytes:
    method, path, bearer, body = line.split("\t")
    request = urllib.request.Request(
        base + path, method=method, data=None if body == "-" else body.encode()
    )
    if bearer != "-":
        request.add_header("Authorization", f"Bearer {bearer}")
    if body != "-":
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--shoppers", type=int, default=200)
    parser.add_argument("--orders", type=int, default=30)
    args = parser.parse_args()

    env = common.production_env(common.recreate_database(DATABASE))
    common.manage(env, "migrate", "--no-input", "-v0")
    seed_catalog(env, products=args.products, database=DATABASE)
    work = Path(tempfile.mkdtemp(prefix="emporium-bench-signed-in-"))
    seeded = work / "shoppers.txt"
    seed_shoppers(env, count=args.shoppers, out=seeded, orders=args.orders)
    common.psql("VACUUM ANALYZE", DATABASE)
    lines = seeded.read_text().splitlines()
    # Requests name their customer; the token is put in once the lock is held
    # (tokens live 15 minutes, and waiting for the lock can take longer).
    usernames = [line.split("\t")[0] for line in lines if "\t" in line]
    token_of: dict[str, str] = {}
    order_id = next(line[1:] for line in lines if line.startswith("#"))
    cart_products = [int(pid) for pid in lines[-1][1:].split(",")]
    product_ids = [
        int(pid)
        for pid in common.psql(
            "SELECT id FROM catalog_product ORDER BY random() LIMIT 2000", DATABASE
        ).split()
    ]
    token = usernames[0]
    rng = random.Random(7)

    def reads(path_of: Any, with_token: bool, count: int = 1) -> list[str]:
        return [_line("GET", path_of(n), token if with_token else None) for n in range(count)]

    files: dict[str, list[str]] = {}
    for signed in (False, True):
        suffix = " (token)" if signed else ""
        files["products list" + suffix] = reads(lambda n: "/api/products/", signed)
        files["product detail" + suffix] = reads(
            lambda n: f"/api/products/{product_ids[n]}/", signed, len(product_ids)
        )
        files["search" + suffix] = reads(
            lambda n: f"/api/search/?q={SEARCH_WORDS[n % len(SEARCH_WORDS)]}", signed, 8
        )
    own_paths = {
        "GET /api/auth/me/": "/api/auth/me/",
        "GET /api/cart/": "/api/cart/",
        "GET /api/wishlist/": "/api/wishlist/",
        "GET /api/orders/ (20 with items)": "/api/orders/",
        "GET /api/orders/<id>/": f"/api/orders/{order_id}/",
    }
    for name, path in own_paths.items():
        files[name] = [_line("GET", path, token)]
    writers = usernames[1:]
    files["POST /api/cart/items/"] = [
        _line(
            "POST",
            "/api/cart/items/",
            writers[n % len(writers)],
            {"product": rng.choice(cart_products), "quantity": 1},
        )
        for n in range(20_000)
    ]

    def with_token(line: str) -> str:
        method, path, username, body = line.split("\t")
        return "\t".join([method, path, token_of.get(username, username), body])

    def write(name: str) -> Path:
        path = work / f"{abs(hash(name))}.txt"
        path.write_text("\n".join(with_token(line) for line in files[name]) + "\n")
        return path

    def load(base: str, name: str, seconds: int) -> common.LoadResult:
        return common.wrk(
            base,
            script=SCRIPT,
            args=[str(write(name))],
            connections=args.connections,
            threads=2,
            seconds=seconds,
        )

    sides = {
        "app": common.app_server_process,
        "postgresql": common.postgres_backend(DATABASE),
        "redis": lambda command: (
            command.startswith("redis-server") or "redis-server" in command.split(" ")[0]
        ),
    }
    results: dict[str, common.LoadResult] = {}
    references: dict[str, common.LoadResult] = {}
    cpu: dict[str, dict[str, float]] = {}

    def measured(base: str, name: str) -> None:
        before = common.process_cpu()
        result = load(base, name, args.seconds)
        spent = common.cpu_spent(before, common.process_cpu(), sides)
        results[name] = result
        cpu[name] = {
            side: seconds * 1000 / max(result.requests, 1) for side, seconds in spent.items()
        }

    bodies = work / "reference"
    bodies.mkdir()
    app_port, reference_port = common.free_port(), common.free_port()
    with common.bench_lock(), ExitStack() as stack:
        base = stack.enter_context(
            common.app_server(
                env, kind="granian", port=app_port, workers=WORKERS, ready_path="/api/categories/"
            )
        )
        token_of.update(fresh_tokens(env, out=work / "tokens.txt"))
        # The bytes the reference answers with: Emporium's own, for each path.
        mapping: dict[str, str] = {}
        for index, name in enumerate(own_paths):
            (bodies / f"{index}.json").write_bytes(_fetch(base, with_token(files[name][0])))
            mapping[own_paths[name]] = f"{index}.json"
        (bodies / "post.json").write_bytes(
            _fetch(base, with_token(files["POST /api/cart/items/"][0]))
        )
        mapping["/api/cart/items/"] = "post.json"
        item_id = json.loads((bodies / "post.json").read_bytes())["id"]
        patch_line = _line("PATCH", f"/api/cart/items/{item_id}/", writers[0], {"quantity": 3})
        (bodies / "patch.json").write_bytes(_fetch(base, with_token(patch_line)))
        mapping["*"] = "patch.json"
        (bodies / "paths.json").write_text(json.dumps(mapping))
        reference_env = {**env, "BENCH_REFERENCE_BODIES": str(bodies)}
        reference = stack.enter_context(
            common.app_server(
                reference_env,
                kind="granian",
                port=reference_port,
                workers=WORKERS,
                ready_path="/api/auth/me/",
                target="bench.minimal_django:application",
            )
        )
        for name in files:
            load(base, name, 1)  # warm-up: connections, prepared statements, caches
        for name in CATALOG:
            measured(base, name)
            measured(base, name + " (token)")
        for name in OWN:
            if name.startswith("PATCH"):
                rows = common.psql(
                    "SELECT u.username, i.id FROM carts_cartitem i"
                    " JOIN carts_shoppingcart c ON c.id = i.cart_id"
                    " JOIN accounts_user u ON u.id = c.user_id WHERE u.username <> 'shopper0'",
                    DATABASE,
                ).splitlines()
                files[name] = [
                    _line("PATCH", f"/api/cart/items/{item}/", user, {"quantity": 1 + n % 5})
                    for n, (user, item) in enumerate(row.split("|") for row in rows)
                ]
                load(base, name, 1)
            references[name] = load(reference, name, args.seconds)
            measured(base, name)

    print()
    print(
        f"{'request':<38}{'req/s':>8}{'p50':>7}{'p99':>8}{'err':>5}{'reference':>11}"
        f"{'ratio':>7}{'target':>8}  {'CPU ms/req app / PostgreSQL / Redis'}"
    )
    figures: dict[str, dict[str, Any]] = {}

    def row(name: str, reference_name: str, reference_rate: float, target: float) -> None:
        result = results[name]
        ratio = result.requests_per_second / reference_rate
        errors = result.server_errors + result.socket_errors + result.client_errors
        use = cpu[name]
        print(
            f"{name:<38}{result.requests_per_second:>8.0f}{result.p50_ms:>7.1f}{result.p99_ms:>8.1f}"
            f"{errors:>5}{reference_rate:>11.0f}{ratio:>7.2f}{target:>8.2f}  "
            f"{use['app']:.3f} / {use['postgresql']:.3f} / {use['redis']:.3f}"
            f"{'' if ratio >= target else '  below target'}"
        )
        figures[name] = {
            "result": common.as_dict(result),
            "reference": reference_name,
            "reference_rate": reference_rate,
            "ratio": ratio,
            "target": target,
            "cpu_ms": use,
        }

    for name, target in CATALOG.items():
        row(name + " (token)", name + " anonymous", results[name].requests_per_second, target)
        row(name, name, results[name].requests_per_second, 1.0)
    for name, target in OWN.items():
        row(name, "minimal Django view", references[name].requests_per_second, target)
    print(
        f"\ngranian {WORKERS} workers x 1 thread, wrk -t2 -c{args.connections}, "
        f"{args.seconds} s each, {args.products} products"
    )
    saved = common.save(
        "signed_in",
        {
            "settings": vars(args),
            "figures": figures,
            "references": {n: common.as_dict(r) for n, r in references.items()},
        },
    )
    print(f"saved {saved.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
