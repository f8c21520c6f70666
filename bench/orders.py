"""A customer's order history on the production profile, beside a same-run reference.

``GET /api/orders/`` is what a customer opens after every purchase ("my
orders"). One customer with 30 orders of two lines each (bench.seed_orders,
placed through checkout); wrk (-t2) with that customer's token, on granian with
the production command's workers and threads, measures:

  (a) my orders       GET /api/orders/, the first page (20 orders with their lines)
  (b) one order       GET /api/orders/{id}/
  reference           GET /api/auth/me/ with the same token: the same
                      authentication and middleware, and one row to render

The ratios to the reference say what listing orders costs beyond an
authenticated request, and travel between machines better than the rates.
The statements each read takes are pinned by emporium/orders/tests/test_query_counts.py.

    python -m bench.orders [--seconds 10] [--connections 16]

The load phases take /tmp/emporium-bench.lock (as every benchmark here), so two
benchmarks never run at once.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import common

DATABASE = "emporium_bench_orders"
SCRIPT = common.ROOT / "bench" / "lua" / "paths.lua"
WORKERS = 2  # one per core on the reference machine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--orders", type=int, default=30)
    parser.add_argument("--server", choices=common.APP_SERVERS, default="granian")
    args = parser.parse_args()

    env = common.production_env(common.recreate_database(DATABASE))
    common.manage(env, "migrate", "--no-input", "-v0")
    work = Path(tempfile.mkdtemp(prefix="emporium-bench-orders-"))
    seeded = work / "customer.txt"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.seed_orders",
            "--orders",
            str(args.orders),
            "--out",
            str(seeded),
        ],
        cwd=common.ROOT,
        env=env,
        check=True,
    )
    common.psql("VACUUM ANALYZE", DATABASE)
    token, order_id = seeded.read_text().split()
    paths = {
        "list": "/api/orders/",
        "detail": f"/api/orders/{order_id}/",
        "reference": "/api/auth/me/",
    }
    for name, path in paths.items():
        (work / f"{name}.txt").write_text(path + "\n")

    def load(base: str, name: str, seconds: int) -> common.LoadResult:
        return common.wrk(
            base,
            script=SCRIPT,
            args=[str(work / f"{name}.txt"), "Authorization", f"Bearer {token}"],
            connections=args.connections,
            threads=2,
            seconds=seconds,
        )

    port = common.free_port()
    results: dict[str, common.LoadResult] = {}
    with (
        common.bench_lock(),
        common.app_server(
            env, kind=args.server, port=port, workers=WORKERS, ready_path="/api/categories/"
        ),
    ):
        base = f"http://127.0.0.1:{port}"
        for name in paths:
            load(base, name, 2)  # warm-up: connections, prepared statements
        # Reference first and last, so drift over the run weighs on both sides.
        first_reference = load(base, "reference", args.seconds)
        results["list"] = load(base, "list", args.seconds)
        results["detail"] = load(base, "detail", args.seconds)
        last_reference = load(base, "reference", args.seconds)
    reference_rate = (first_reference.requests_per_second + last_reference.requests_per_second) / 2

    print()
    print(
        f"{'measured':<34}{'req/s':>9}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'errors':>8}"
        f"{'ratio to reference':>20}"
    )
    rows = [
        ("(a) my orders, first page", results["list"]),
        ("(b) one order", results["detail"]),
        ("    reference: /api/auth/me/ (1st)", first_reference),
        ("    reference: /api/auth/me/ (2nd)", last_reference),
    ]
    for name, value in rows:
        errors = value.server_errors + value.socket_errors + value.client_errors
        ratio = value.requests_per_second / reference_rate
        print(
            f"{name:<34}{value.requests_per_second:>9.0f}{value.p50_ms:>8.2f}{value.p90_ms:>8.2f}"
            f"{value.p99_ms:>8.2f}{errors:>8}{ratio:>20.2f}"
        )
    print(
        f"\n{args.server} ({WORKERS} workers), {args.connections} connections, {args.orders} orders"
    )
    saved = common.save(
        "orders",
        {
            "settings": vars(args),
            "my_orders_first_page": common.as_dict(results["list"]),
            "one_order": common.as_dict(results["detail"]),
            "reference_me": [common.as_dict(first_reference), common.as_dict(last_reference)],
            "ratio_list_to_reference": results["list"].requests_per_second / reference_rate,
            "ratio_detail_to_reference": results["detail"].requests_per_second / reference_rate,
        },
    )
    print(f"saved {saved.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
