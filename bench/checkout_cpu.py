"""CPU per checkout, in the app and in PostgreSQL, with no server or load generator.

Seeds buyers with filled carts in a database of its own (``bench.seed_checkout``),
then places their orders one after another through ``config.wsgi.application``
on the production settings, and prints the CPU each checkout cost this process
and the PostgreSQL backends serving it (read from /proc). Load runs of
``bench.checkout`` vary by a fifth between two runs of the same code; this
figure varies by a few per cent, so it tells two trees apart. It measures the
tree it is started from (the current directory)::

    python -m bench.checkout_cpu
    cd var/bench-base/<commit> && python ../../../bench/checkout_cpu.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")


def _backends_cpu(database: str) -> float:
    """CPU seconds of the PostgreSQL backends connected to ``database``."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            # "postgres: [<cluster>: ]<user> <database> <client> <state>"
            if not command.startswith(b"postgres: ") or f" {database} ".encode() not in command:
                continue
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="emporium_bench_checkout_cpu")
    parser.add_argument("--buyers", type=int, default=2000)
    parser.add_argument("--measured", type=int, default=1500)
    parser.add_argument("--redis-db", type=int, default=13)
    args = parser.parse_args()
    # Started by its path from another tree, this file's own tree provides bench.common;
    # the tree measured is the current directory (put first on the path below).
    sys.path.append(str(Path(__file__).resolve().parents[1]))
    from bench import common

    tree = Path.cwd()
    os.environ.update(
        common.production_env(
            common.recreate_database(args.database),
            REDIS_URL=f"redis://127.0.0.1:6379/{args.redis_db}",
        )
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=tree, check=True)
    with tempfile.TemporaryDirectory() as work:
        tokens_file, initial = Path(work) / "tokens", Path(work) / "initial.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.seed_checkout",
                *("--buyers", str(args.buyers), "--products", "200"),
                *("--tokens", str(tokens_file), "--initial", str(initial)),
            ],
            cwd=tree,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tokens = tokens_file.read_text().split()
    warm = args.buyers - args.measured
    if warm < 1:
        raise SystemExit("--buyers must exceed --measured (the rest warm up)")

    sys.path.insert(0, str(tree))
    from config.wsgi import application

    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status.split()[0])
        return lambda data: None

    def checkout(token: str) -> None:
        environ = common.wsgi_environ(
            "/api/orders/",
            method="POST",
            body=b"{}",
            CONTENT_TYPE="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        common.wsgi_call(application, environ, start_response)

    for token in tokens[:warm]:
        checkout(token)
    statuses.clear()
    app_before, pg_before, started = time.process_time(), _backends_cpu(args.database), time.time()
    for token in tokens[warm:]:
        checkout(token)
    app = (time.process_time() - app_before) / args.measured * 1e6
    database = (_backends_cpu(args.database) - pg_before) / args.measured * 1e6
    wall = (time.time() - started) / args.measured * 1e6
    print(
        f"{tree.name}: per checkout: app {app:.0f} us CPU, PostgreSQL {database:.0f} us CPU, "
        f"{wall:.0f} us wall; answers {sorted(set(statuses))}"
    )
    common.psql(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
