"""CPU per uncached catalog read, split by process, with and without the lean gateway.

Throughput on a shared two-core machine moves with the neighbours; the CPU
each request costs in the app server, PostgreSQL and nginx moves much less, and
it is what decides the throughput ceiling. Runs on the database the catalog
benchmark seeded (``python -m bench.catalog`` first), the app on granian as
that benchmark runs it, nginx in front, wrk with 64 connections:

    python -m bench.catalog_cpu [--seconds 8] [--threads 1,2,4]

For each of the uncached list (random filter and cursor) and detail (random
ids), with the gateway on (the default) and off (LEAN_GATEWAY_ENABLED=false:
Django's whole request cycle), it prints req/s, p50/p99 and the CPU milliseconds per
request of the app server, its PostgreSQL backends and nginx's workers, read
from /proc before and after the load. ``--threads`` repeats all of it for each
number of granian blocking threads per worker (docs/adr/0021).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import common
from bench.catalog import DATABASE, SCRIPT, WORKERS

_SIDES = {
    "app": common.app_server_process,
    "postgres": common.postgres_backend(DATABASE),
    "nginx": common.nginx_worker,
}


def measure(label: str, base: str, paths: Path, seconds: int) -> None:
    def load(duration: int) -> common.LoadResult:
        return common.wrk(
            base, script=SCRIPT, args=[str(paths)], connections=64, threads=2, seconds=duration
        )

    load(2)  # warm-up
    before = common.process_cpu()
    result = load(seconds)
    spent = common.cpu_spent(before, common.process_cpu(), _SIDES)
    per = {kind: 1000 * value / max(result.requests, 1) for kind, value in spent.items()}
    print(
        f"{label:<38}{result.requests_per_second:>8.0f}{result.p50_ms:>8.1f}{result.p99_ms:>8.1f}"
        f"{per.get('app', 0):>8.3f}{per.get('postgres', 0):>10.3f}{per.get('nginx', 0):>8.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument(
        "--threads",
        default=str(common.GRANIAN_BLOCKING_THREADS),
        help="granian blocking threads per worker; several, comma-separated, to compare",
    )
    args = parser.parse_args()
    thread_counts = [int(value) for value in args.threads.split(",")]
    if int(common.psql("SELECT COUNT(*) FROM catalog_product", DATABASE) or 0) == 0:
        raise SystemExit("seed the catalog first: python -m bench.catalog")
    database_url = common.database_url(DATABASE)
    env = common.production_env(
        database_url, DATABASE_CONN_MAX_AGE="600", CATALOG_CACHE_ENABLED="false"
    )
    common.manage(env, "migrate", "--no-input", "-v0")
    work = Path(tempfile.mkdtemp(prefix="emporium-bench-catalog-cpu-"))
    command = [sys.executable, "-m", "bench.catalog_paths", str(work)]
    subprocess.run(command, cwd=common.ROOT, env=env, check=True)
    work.chmod(0o755)
    prefix = work / "nginx"
    app_port, pass_port = common.free_port(), common.free_port()
    conf = (
        common.nginx_preamble(prefix, app_port=app_port)
        + f"""
    server {{
        listen 127.0.0.1:{pass_port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        location / {{ proxy_pass http://emporium_app; }}
    }}
}}
"""
    )
    base = f"http://127.0.0.1:{pass_port}"
    print(
        f"{'measured':<38}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'app':>8}{'postgres':>10}{'nginx':>8}  (CPU ms per request)"
    )
    with common.nginx(conf, prefix), common.bench_lock():
        for threads in thread_counts:
            for gateway in ("true", "false"):
                with common.app_server(
                    {**env, "LEAN_GATEWAY_ENABLED": gateway},
                    kind="granian",
                    port=app_port,
                    workers=WORKERS,
                    threads=threads,
                    ready_path="/api/categories/",
                ):
                    for name in ("uncached_list", "detail"):
                        cycle = "gateway" if gateway == "true" else "Django cycle"
                        label = f"{name} ({cycle}, {threads}t)"
                        measure(label, base, work / f"{name}.txt", args.seconds)


if __name__ == "__main__":
    main()
