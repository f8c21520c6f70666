"""Checkout throughput on the production profile, beside pgbench's tpcb rate.

64 concurrent connections each post POST /api/orders/ for a different buyer
whose cart holds 1-3 products (contended: 2,000 products shared by all).
Afterwards every product's stock plus what was ordered must equal its initial
stock, so the figure is only reported for a run with zero oversold units.

    python -m bench.checkout [--seconds 15] [--connections 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import common


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--server", choices=common.APP_SERVERS, default="granian")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per worker (default: production's)"
    )
    parser.add_argument("--buyers", type=int, default=40_000)
    args = parser.parse_args()

    database_url = common.recreate_database("emporium_bench_checkout")
    env = common.production_env(database_url)
    common.manage(env, "migrate", "--no-input", "-v0")
    work = Path(tempfile.mkdtemp(prefix="emporium-bench-"))
    tokens, initial = work / "tokens.txt", work / "initial.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.seed_checkout",
            "--buyers",
            str(args.buyers),
            "--products",
            "2000",
            "--tokens",
            str(tokens),
            "--initial",
            str(initial),
        ],
        cwd=common.ROOT,
        env=env,
        check=True,
    )
    script = common.ROOT / "bench" / "lua" / "checkout.lua"
    port = common.free_port()
    with common.app_server(
        env,
        kind=args.server,
        port=port,
        workers=args.workers,
        threads=args.threads,
        ready_path="/api/categories/",
    ) as base:
        warmup = common.wrk(
            base, script=script, args=[str(tokens), "2", "0"], connections=16, threads=2, seconds=3
        )
        result = common.wrk(
            base,
            script=script,
            args=[str(tokens), "2", str(warmup.requests + 500)],
            connections=args.connections,
            threads=2,
            seconds=args.seconds,
        )

    ordered = dict(
        line.split("|")
        for line in common.psql(
            "SELECT product_id, SUM(quantity) FROM orders_orderitem GROUP BY product_id",
            "emporium_bench_checkout",
        ).splitlines()
    )
    stock = dict(
        line.split("|")
        for line in common.psql(
            "SELECT id, stock_quantity FROM catalog_product", "emporium_bench_checkout"
        ).splitlines()
    )
    start = json.loads(initial.read_text())
    oversold = sum(
        max(0, int(ordered.get(pid, 0)) + int(stock[pid]) - start[pid]) for pid in start
    ) + sum(max(0, start[pid] - int(ordered.get(pid, 0)) - int(stock[pid])) for pid in start)
    orders = int(common.psql("SELECT COUNT(*) FROM orders_order", "emporium_bench_checkout"))
    reference = common.pgbench_tpcb()
    common.psql('DROP DATABASE IF EXISTS "emporium_bench_checkout" WITH (FORCE)')

    common.print_table(
        [
            ("checkout, 64 buyers (orders)", result),
            ("reference: pgbench tpcb, 8 clients (tx)", reference),
        ]
    )
    print(f"ratio checkout / tpcb: {result.requests_per_second / reference:.2f}")
    print(
        f"orders created {orders}, 2xx {result.ok + warmup.ok}, 409 {result.conflicts}, "
        f"5xx {result.server_errors}, stock mismatches (oversold or lost units) {oversold}"
    )
    path = common.save(
        "checkout",
        {
            "result": common.as_dict(result),
            "warmup": common.as_dict(warmup),
            "reference_pgbench_tpcb_tps": reference,
            "orders": orders,
            "stock_mismatch_units": oversold,
            "settings": vars(args),
        },
    )
    print(f"saved {path.relative_to(common.ROOT)}")
    if oversold or result.server_errors:
        raise SystemExit("checkout benchmark saw oversold units or server errors")


if __name__ == "__main__":
    main()
