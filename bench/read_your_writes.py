"""What read-your-writes costs on a streaming replica: pinning a writer against comparing LSNs.

    python -m bench.read_your_writes [--writes 300]

Starts a private primary and a ``pg_basebackup -R`` replica
(deploy/postgres/pgcluster.py) and measures, in one run:

* the replica's visibility lag: a row committed on the primary, then polled
  on the replica until it is there (every 0.1 ms), per write;
* the per-request costs of each way to give a writer its own writes:
  pinning (one Redis GET per signed-in read, one SET per write) and comparing
  LSNs (a ``pg_current_wal_lsn()`` on the primary per write plus a SET, and a
  GET and a ``pg_last_wal_replay_lsn()`` on the replica per signed-in read);
* the reference: a ``SELECT 1`` round trip to the primary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis

from deploy.postgres import pgcluster


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e6

    return f"p50 {at(0.5):7.0f} µs   p99 {at(0.99):7.0f} µs   max {ordered[-1] * 1e6:7.0f} µs"


def _timed(action: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=300)
    arguments = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="emporium-ryw-"))
    base.chmod(0o755)
    primary = pgcluster.primary_create(base / "primary", port=pgcluster.free_port())
    replica = pgcluster.replica_create(
        base / "replica", port=pgcluster.free_port(), primary_port=primary.port
    )
    try:
        if not pgcluster.replica_wait_streaming(primary):
            raise RuntimeError("the replica does not stream")
        writer = psycopg.connect(primary.conninfo(), autocommit=True)
        reader = psycopg.connect(replica.conninfo(), autocommit=True)
        cache = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
        writer.execute("CREATE TABLE ryw (id bigint PRIMARY KEY, at timestamptz)")
        time.sleep(0.5)

        lags = []
        for number in range(arguments.writes):
            writer.execute("INSERT INTO ryw VALUES (%s, now())", [number])
            committed = time.perf_counter()
            while reader.execute("SELECT 1 FROM ryw WHERE id = %s", [number]).fetchone() is None:
                time.sleep(0.0001)
            lags.append(time.perf_counter() - committed)
        rounds = 2000
        reference = _timed(lambda: writer.execute("SELECT 1").fetchone(), rounds)
        pin_read = _timed(lambda: cache.get("db-primary-pin:bench"), rounds)
        pin_write = _timed(lambda: cache.set("db-primary-pin:bench", 1, ex=4), rounds)
        lsn_write = _timed(lambda: writer.execute("SELECT pg_current_wal_lsn()").fetchone(), rounds)
        lsn_read = _timed(
            lambda: reader.execute("SELECT pg_last_wal_replay_lsn()").fetchone(), rounds
        )
        cache.delete("db-primary-pin:bench")

        print(f"replica visibility lag ({arguments.writes} writes): {_percentiles(lags)}")
        print(f"reference  SELECT 1 on the primary:          {_percentiles(reference)}")
        print(f"pin        Redis GET (signed-in read):       {_percentiles(pin_read)}")
        print(f"pin        Redis SET (write):                {_percentiles(pin_write)}")
        print(f"LSN        pg_current_wal_lsn() (write):     {_percentiles(lsn_write)}")
        print(f"LSN        pg_last_wal_replay_lsn() (read):  {_percentiles(lsn_read)}")
        unit = statistics.median(reference)
        pin_read_cost = statistics.median(pin_read)
        lsn_read_cost = pin_read_cost + statistics.median(lsn_read)
        pin_write_cost = statistics.median(pin_write)
        lsn_write_cost = statistics.median(lsn_write) + pin_write_cost
        print(
            f"per signed-in read: pin {pin_read_cost / unit:.2f}x a SELECT 1, "
            f"LSN {lsn_read_cost / unit:.2f}x; per write: pin {pin_write_cost / unit:.2f}x, "
            f"LSN {lsn_write_cost / unit:.2f}x"
        )
    finally:
        replica.remove()
        primary.remove()


if __name__ == "__main__":
    main()
