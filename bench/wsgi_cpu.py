"""CPU per catalog read in one process, with no server or load generator in the way.

Calls ``config.wsgi.application`` (the lean gateway in front of Django) directly,
on the production settings, against a seeded catalog database (the one
``python -m bench.catalog`` leaves behind, or any other) and a Redis database
of its own, and prints the process CPU time per request for three reads:
the default list page, a random product, a random category filtered to
products in stock. With ``--uncached`` the catalog cache is off and every read
is built from the database. Run it in two trees, one after the other, to see
what a change costs per request when the wall-clock figures of the load
scenarios are too noisy to tell. It measures the tree it is started from (the
current directory), so the same file serves for an earlier revision's worktree::

    python -m bench.wsgi_cpu --database emporium_bench_catalog --redis-db 4 [--uncached]
    cd var/bench-base/<commit> && python ../../../bench/wsgi_cpu.py --database ... --redis-db 5
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--redis-db", type=int, required=True)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--uncached", action="store_true")
    args = parser.parse_args()
    # Started by its path from another tree, this file's own tree provides bench.common;
    # the tree measured is the current directory (put first on the path below).
    sys.path.append(str(Path(__file__).resolve().parents[1]))
    from bench import common

    os.environ.update(
        common.production_env(
            common.database_url(args.database),
            REDIS_URL=f"redis://127.0.0.1:6379/{args.redis_db}",
            CATALOG_CACHE_ENABLED="false" if args.uncached else "true",
        )
    )
    sys.path.insert(0, os.getcwd())  # the tree to measure
    from config.wsgi import application

    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    def call(environ: dict[str, Any]) -> None:
        common.wsgi_call(application, environ, start_response)

    rng = random.Random(1)
    reads: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("default list page", lambda: common.wsgi_environ("/api/products/")),
        ("random product", lambda: common.wsgi_environ(f"/api/products/{rng.randint(1, 90_000)}/")),
        (
            "random category, in stock",
            lambda: common.wsgi_environ(
                "/api/products/", f"category={rng.randint(1, 126)}&in_stock=true"
            ),
        ),
    ]
    print(f"{'read':<28}{'CPU us/request':>16}  {'cache':<8}")
    for name, make in reads:
        for _ in range(300):  # warm-up (and, cached, fill the cache)
            call(make())
        statuses.clear()
        started = time.process_time()
        for _ in range(args.requests):
            call(make())
        spent = (time.process_time() - started) / args.requests * 1e6
        answered = {status.split()[0] for status in statuses}
        print(f"{name:<28}{spent:>16.0f}  {'off' if args.uncached else 'on':<8}{sorted(answered)}")


if __name__ == "__main__":
    main()
