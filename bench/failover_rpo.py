"""Acknowledged commits lost at failover, with asynchronous and with synchronous replication.

    python -m bench.failover_rpo [--writers 8 --seconds 3]

For each mode, a private primary and a ``pg_basebackup -R`` replica
(deploy/postgres/pgcluster.py); ``--writers`` connections insert rows as fast
as they can, each noting the ids whose COMMIT returned. After ``--seconds``
the primary is SIGKILLed, the replica promoted (pgcluster.failover, what
``make failover`` runs), and the acknowledged ids missing on it are counted.
Printed per mode: commits/s before the kill (the cost of waiting for the
replica, against asynchronous as the reference), acknowledged commits, lost
ones, and the promotion time.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from deploy.postgres import pgcluster


def _run(mode: str, *, writers: int, seconds: float) -> tuple[float, int, int, float]:
    base = Path(tempfile.mkdtemp(prefix=f"emporium-rpo-{mode}-"))
    base.chmod(0o755)
    primary = pgcluster.primary_create(base / "primary", port=pgcluster.free_port())
    replica = pgcluster.replica_create(
        base / "replica", port=pgcluster.free_port(), primary_port=primary.port
    )
    try:
        if not pgcluster.replica_wait_streaming(primary):
            raise RuntimeError("the replica does not stream")
        primary.sql("CREATE TABLE acknowledged (id bigint PRIMARY KEY, writer int)")
        if mode == "synchronous":
            primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'replica'")
            primary.sql("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 20
            while primary.sql("SELECT sync_state FROM pg_stat_replication") != "sync":
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not become synchronous")
                time.sleep(0.05)
        acknowledged: list[list[int]] = [[] for _ in range(writers)]
        stop = threading.Event()

        def write(number: int) -> None:
            with psycopg.connect(primary.conninfo(), autocommit=True) as connection:
                row_id = number
                while not stop.is_set():
                    try:
                        connection.execute(
                            "INSERT INTO acknowledged VALUES (%s, %s)", [row_id, number]
                        )
                    except psycopg.Error:
                        return
                    acknowledged[number].append(row_id)
                    row_id += writers

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        primary.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        started = time.monotonic()
        pgcluster.failover(primary, replica)
        promotion = time.monotonic() - started
        on_replica = {
            int(value)
            for value in replica.sql("SELECT string_agg(id::text, ',') FROM acknowledged").split(
                ","
            )
            if value
        }
        every = {row_id for rows in acknowledged for row_id in rows}
        return len(every) / seconds, len(every), len(every - on_replica), promotion
    finally:
        replica.remove()
        primary.remove()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    arguments = parser.parse_args()
    results = {
        mode: _run(mode, writers=arguments.writers, seconds=arguments.seconds)
        for mode in ("asynchronous", "synchronous")
    }
    reference = results["asynchronous"][0]
    print(
        f"{'replication':<13} {'commits/s':>10} {'ratio':>8} {'acknowledged':>13} {'lost':>6} "
        f"{'promotion s':>12}"
    )
    for mode, (rate, acknowledged, lost, promotion) in results.items():
        print(
            f"{mode:<13} {rate:>10,.0f} {rate / reference:>8.2f} {acknowledged:>13,} {lost:>6} "
            f"{promotion:>12.2f}"
        )


if __name__ == "__main__":
    main()
