"""CPU per request with the Prometheus instrumentation on and off, in one process.

Calls ``config.wsgi.application`` directly on the production settings, with
``PROMETHEUS_MULTIPROC_DIR`` set as the app servers run it, against a seeded
catalog database (the one ``python -m bench.catalog`` leaves behind, or any
other) and a Redis database of its own. For each read, cached and uncached, it
runs blocks of requests alternately with the instrumentation on and off (ABBA
order, so drift in the machine's load weighs on both alike) and prints the
median CPU per request of each side and the median of each round's
difference (on minus off, the steadier figure on a busy machine). Off is what
``METRICS_ENABLED=false`` gives: no statement wrapper, no signal receiver,
nothing recorded::

    python -m bench.metrics_cpu --database emporium_bench_catalog --redis-db 4
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--redis-db", type=int, required=True)
    parser.add_argument("--requests", type=int, default=150, help="requests per block")
    parser.add_argument("--rounds", type=int, default=15, help="ABBA rounds (4 blocks each)")
    args = parser.parse_args()
    from bench import common

    directory = tempfile.mkdtemp(prefix="emporium-bench-metrics-")
    os.environ.update(
        common.production_env(
            common.database_url(args.database),
            REDIS_URL=f"redis://127.0.0.1:6379/{args.redis_db}",
            PROMETHEUS_MULTIPROC_DIR=directory,
            METRICS_ENABLED="true",
        )
    )
    from django.conf import settings

    from config.wsgi import application
    from emporium.observability import instrumentation

    statuses: set[str] = set()

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.add(status.split()[0])
        return lambda data: None

    def call(environ: dict[str, Any]) -> None:
        common.wsgi_call(application, environ, start_response)

    def metrics_switch(on: bool) -> None:
        settings.METRICS_ENABLED = on
        if on:
            instrumentation.instrumentation_install()
        else:
            instrumentation.instrumentation_remove()

    rng = random.Random(1)
    hot_products = [rng.randint(1, 90_000) for _ in range(100)]
    reads: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("default list page", lambda: common.wsgi_environ("/api/products/")),
        ("product", lambda: common.wsgi_environ(f"/api/products/{rng.choice(hot_products)}/")),
        (
            "category, in stock",
            lambda: common.wsgi_environ(
                "/api/products/", f"category={rng.randint(1, 126)}&in_stock=true"
            ),
        ),
    ]
    print(f"{'read':<22}{'cache':<7}{'on us':>8}{'off us':>8}{'on - off us':>13}{'cost':>8}")
    for cached in (True, False):
        settings.CATALOG_CACHE_ENABLED = cached
        for name, make in reads:
            for _ in range(300):  # warm-up (and, cached, fill the cache)
                call(make())
            spent: dict[bool, list[float]] = {True: [], False: []}
            differences: list[float] = []
            for _ in range(args.rounds):
                for on in (True, False, False, True):
                    metrics_switch(on)
                    started = time.process_time()
                    for _ in range(args.requests):
                        call(make())
                    spent[on].append((time.process_time() - started) / args.requests * 1e6)
                differences.append(
                    (spent[True][-1] + spent[True][-2] - spent[False][-1] - spent[False][-2]) / 2
                )
            metrics_switch(True)
            off_us = statistics.median(spent[False])
            difference = statistics.median(differences)
            print(
                f"{name:<22}{'on' if cached else 'off':<7}{statistics.median(spent[True]):>8.0f}"
                f"{off_us:>8.0f}{difference:>13.1f}{difference / off_us * 100:>7.1f}%",
                flush=True,
            )
    print(f"answers {sorted(statuses)}")


if __name__ == "__main__":
    main()
