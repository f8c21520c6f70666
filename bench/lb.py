"""Load balancing measured: nginx (TLS) in front of 1, 2 and 4 app servers of `make cluster`.

For each count of app servers a cluster of its own is started (granian, one
worker per server, the app's catalog cache off so that an uncached read is one),
and wrk (-t2, HTTPS, keep-alive) measures through nginx:

  catalog cached      GET /api/products/ answered by nginx's micro-cache
  catalog uncached    GET /api/products/?page=N with a cookie: past the micro-cache,
                      to an app server and PostgreSQL (the app's cache off)
  checkout            POST /api/orders/, a different buyer with a filled cart each time

beside references measured in the same run: a static file through the same nginx
and TLS listener (what nginx alone sustains here), the uncached read sent straight
to one app server without nginx, and pgbench's tpcb on the shared PostgreSQL (the
reference of bench.checkout).

    python -m bench.lb [--servers 1,2,4] [--seconds 10] [--connections 56]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench import common
from bench.cluster import Cluster, cluster_directory, cluster_environment

LUA = common.ROOT / "bench" / "lua"


def measure(
    cluster: Cluster, work: Path, *, seconds: int, connections: int
) -> dict[str, common.LoadResult]:
    base = cluster.base
    cached = work / "cached.txt"
    cached.write_text("/api/products/\n")
    uncached = work / "uncached.txt"
    uncached.write_text("".join(f"/api/products/?page={page}\n" for page in range(1, 9)))
    static = work / "static.txt"
    static.write_text("/static/admin/css/base.css\n")
    tokens = cluster.directory / "buyers.txt"
    paths = LUA / "paths.lua"

    def wrk(url: str, script: Path, args: list[str], length: int = seconds) -> common.LoadResult:
        return common.wrk(
            url, script=script, args=args, connections=connections, threads=2, seconds=length
        )

    results: dict[str, common.LoadResult] = {}
    wrk(base, paths, [str(cached)], 2)  # warm-up: TLS sessions, the cache entry
    results["catalog cached"] = wrk(base, paths, [str(cached)])
    wrk(base, paths, [str(uncached), "Cookie", "lb=1"], 2)
    results["catalog uncached"] = wrk(base, paths, [str(uncached), "Cookie", "lb=1"])
    direct = f"http://127.0.0.1:{cluster.ports['app-1']}"
    results["ref: uncached, one app server direct"] = wrk(
        direct, paths, [str(uncached), "X-Forwarded-Proto", "https"]
    )
    results["ref: static file via nginx"] = wrk(base, paths, [str(static)])
    warmup = wrk(base, LUA / "checkout.lua", [str(tokens), "2", "0"], 2)
    results["checkout"] = wrk(
        base, LUA / "checkout.lua", [str(tokens), "2", str(warmup.requests + 200)]
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="1,2,4")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=56)
    parser.add_argument("--buyers", type=int, default=12000)
    args = parser.parse_args()
    common.require_tool("wrk", "wrk")
    by_count: dict[int, dict[str, common.LoadResult]] = {}
    for count in [int(value) for value in args.servers.split(",")]:
        directory = cluster_directory(f"lb{count}")
        cluster = Cluster(
            directory,
            cluster_environment(
                directory,
                CLUSTER_APP_SERVERS=str(count),
                CLUSTER_BUYERS=str(args.buyers),
                CLUSTER_SEED_PRODUCTS="2000",
                # One client address: nginx's per-client limits would measure themselves.
                CLUSTER_RATE="1000000r/s",
                CLUSTER_BURST="1000000",
                # A phase's requests still queued at the app servers when the next
                # phase opens its connections would count against limit_conn (429).
                CLUSTER_CONNECTIONS="60000",  # nginx allows at most 65535
                CATALOG_CACHE_ENABLED="false",
                THROTTLE_USER_WRITES="1000000/min",
                LOG_LEVEL="WARNING",
                ACCESS_LOG="false",
            ),
        )
        print(f"== {count} app server(s): starting the cluster", flush=True)
        try:
            cluster.start()
            with tempfile.TemporaryDirectory() as work:
                by_count[count] = measure(
                    cluster, Path(work), seconds=args.seconds, connections=args.connections
                )
        finally:
            cluster.stop()
        common.print_table(list(by_count[count].items()))
    reference = common.pgbench_tpcb()
    print()
    names = list(next(iter(by_count.values())))
    header = "".join(f"{f'{count} server(s)':>24}" for count in by_count)
    print(f"{'req/s (p99 ms)':<40}{header}")
    for name in names:
        cells = "".join(
            f"{f'{by_count[c][name].requests_per_second:.0f} ({by_count[c][name].p99_ms:.0f})':>24}"
            for c in by_count
        )
        print(f"{name:<40}{cells}")
    print(f"{'ref: pgbench tpcb, 8 clients (tx/s)':<40}{reference:>24.0f}")
    errors = {
        f"{count} {name}": result.requests - result.ok
        for count, results in by_count.items()
        for name, result in results.items()
        if result.requests - result.ok
    }
    if errors:
        print(f"answers other than 2xx (5xx, 409, socket errors): {errors}")
    payload: dict[str, Any] = {
        "by_app_servers": {
            str(count): {name: common.as_dict(result) for name, result in results.items()}
            for count, results in by_count.items()
        },
        "reference_pgbench_tpcb_tps": reference,
        "settings": vars(args),
    }
    print(f"saved {common.save('lb', payload)}")


if __name__ == "__main__":
    main()
