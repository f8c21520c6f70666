"""Telemetry ingestion over HTTP on the production profile, beside raw PostgreSQL COPY.

The app server (gunicorn by default, ``--server``) runs behind nginx, as in
production (``--direct`` leaves nginx out, to measure what it costs), from
its own database; wrk posts pre-generated batches of 1,000 points (each
device with its own token; realistic traces from
``emporium.delivery.simulation``) to ``POST /api/telemetry/`` with
deduplication on, as in production. The headline figure is the number of
rows that actually landed in the partitioned points table during the
measured run, divided by its duration: a batch answered 200 but stored as
duplicates does not count. The reference, measured in the same run, is
binary COPY of the same rows with psycopg, in batches of 1,000, into a plain
table with the same unique (device_id, recorded_at) index.

Load phases hold ``/tmp/emporium-bench.lock`` (flock) so two benchmarks never
overlap on this machine.

The CPU time each side used during the measured run (app server processes,
PostgreSQL backends, nginx, wrk) is read from /proc and printed per batch, so
a run tells where the time went.

    python -m bench.ingest [--seconds 15] [--connections 8] [--workers 4]
        [--threads 1] [--server gunicorn-gthread] [--direct]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg

from bench import common
from emporium.delivery.simulation import TraceGenerator

DATABASE = "emporium_bench_ingest"
LOCK_FILE = "/tmp/emporium-bench.lock"  # noqa: S108 (shared on purpose with the other benchmarks)
BATCH = 1_000
RATE = 5.0  # points per second per device: one batch covers 200 s of one device


class Point(msgspec.Struct):
    device_id: int
    timestamp: datetime
    latitude: float
    longitude: float
    speed: float | None = None
    heading: float | None = None
    accuracy: float | None = None


@contextmanager
def bench_lock() -> Iterator[None]:
    """The same lock as ``flock /tmp/emporium-bench.lock`` (flock(2) on the file)."""
    with open(LOCK_FILE, "a") as handle:
        started = time.monotonic()
        fcntl.flock(handle, fcntl.LOCK_EX)
        waited = time.monotonic() - started
        if waited > 1:
            print(f"waited {waited:.0f} s for {LOCK_FILE}", flush=True)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _device_bodies(job: tuple[int, int, float, int]) -> list[bytes]:
    """All batches of one device, in time order, as JSON arrays."""
    device_id, batches, start_epoch, seed = job
    generator = TraceGenerator(
        device_ids=[device_id], rate=RATE, duplicate_fraction=0, invalid_fraction=0, seed=seed
    )
    encoder = msgspec.json.Encoder()
    start = datetime.fromtimestamp(start_epoch, UTC)
    span = BATCH / RATE
    return [
        encoder.encode(
            generator.points_for(
                device_id, start=start + timedelta(seconds=index * span), seconds=span
            )
        )
        for index in range(batches)
    ]


def generate_bodies(
    tokens: dict[int, str], *, batches_per_device: int, directory: Path, warmup_rounds: int
) -> tuple[Path, Path, list[bytes]]:
    """Writes the warm-up and the measured bodies files; returns them and the measured bodies.

    Lines go round the devices (device 1 batch 0, device 2 batch 0, ...), so
    concurrent requests come from different devices, each in time order.
    """
    # Old enough that the last point is still in the past, young enough for retention.
    span = batches_per_device * BATCH / RATE
    start_epoch = (datetime.now(UTC) - timedelta(seconds=span + 3600)).timestamp()
    jobs = [(device_id, batches_per_device, start_epoch, device_id) for device_id in tokens]
    with multiprocessing.Pool() as pool:
        per_device = pool.map(_device_bodies, jobs)
    warmup, measured = directory / "warmup.tsv", directory / "bodies.tsv"
    measured_bodies: list[bytes] = []
    with warmup.open("wb") as warm_file, measured.open("wb") as main_file:
        for round_index in range(batches_per_device):
            for device_id, bodies in zip(tokens, per_device, strict=True):
                line = tokens[device_id].encode() + b"\t" + bodies[round_index] + b"\n"
                if round_index < warmup_rounds:
                    warm_file.write(line)
                else:
                    main_file.write(line)
                    measured_bodies.append(bodies[round_index])
    return warmup, measured, measured_bodies


def copy_reference(database_url: str, bodies: list[bytes], *, max_rows: int) -> float:
    """Binary COPY of the same rows, 1,000 per transaction, into a table with the same key."""
    decoder = msgspec.json.Decoder(list[Point])
    rows: list[tuple[object, ...]] = []
    for body in bodies:
        rows.extend(
            (p.device_id, p.timestamp, p.latitude, p.longitude, p.speed, p.heading, p.accuracy)
            for p in decoder.decode(body)
        )
        if len(rows) >= max_rows:
            break
    rows = rows[:max_rows]
    types = ["int8", "timestamptz", "float8", "float8", "float8", "float8", "float8"]
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS bench_copy_reference")
        connection.execute(
            "CREATE TABLE bench_copy_reference (device_id int8 NOT NULL, recorded_at timestamptz"
            " NOT NULL, latitude float8 NOT NULL, longitude float8 NOT NULL, speed float8,"
            " heading float8, accuracy float8)"
        )
        connection.execute("CREATE UNIQUE INDEX ON bench_copy_reference (device_id, recorded_at)")
        started = time.perf_counter()
        for offset in range(0, len(rows), BATCH):
            with (
                connection.transaction(),
                connection.cursor() as cursor,
                cursor.copy(
                    "COPY bench_copy_reference (device_id, recorded_at, latitude, longitude,"
                    " speed, heading, accuracy) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(types)
                for row in rows[offset : offset + BATCH]:
                    copy.write_row(row)
        elapsed = time.perf_counter() - started
        stored = connection.execute("SELECT count(*) FROM bench_copy_reference").fetchone()
        connection.execute("DROP TABLE bench_copy_reference")
    if stored is None or stored[0] != len(rows):
        raise RuntimeError(f"the COPY reference stored {stored} of {len(rows)} rows")
    return len(rows) / elapsed


def stored_points() -> int:
    return int(common.psql("SELECT count(*) FROM delivery_telemetry_point", DATABASE))


def nginx_conf(prefix: Path, *, listen_port: int, app_port: int) -> str:
    """The loopback variant of deploy/nginx/emporium.conf for the telemetry endpoint.

    Bodies up to 2 MiB, kept in memory (a 1,000-point batch is about 150 KB,
    over nginx's default 16 KB buffer, which would write each body to a
    temporary file), and keepalive connections to the app.
    """
    return (
        common.nginx_preamble(prefix, app_port=app_port, workers="1", connections=1024)
        + f"""
    server {{
        listen 127.0.0.1:{listen_port};
        client_max_body_size 2m;
        client_body_buffer_size 2m;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $remote_addr;
        location / {{ proxy_pass http://emporium_app; }}
    }}
}}
"""
    )


def _machine_cpu_seconds() -> float:
    with open("/proc/stat") as handle:
        values = [int(value) for value in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    busy = sum(values[:8]) - values[3] - values[4]
    return busy / common.CLOCK_TICKS


def cpu_split(before: common.ProcessCpu, after: common.ProcessCpu) -> dict[str, float]:
    """CPU seconds spent during a run by the server side, from two /proc snapshots."""
    return common.cpu_spent(
        before,
        after,
        {
            "app server": common.app_server_process,
            "postgresql": common.postgres_backend(DATABASE),
            "nginx": lambda command: (
                common.nginx_worker(command) or "emporium-bench-ingest" in command
            ),
        },
    )


def _children_cpu_seconds() -> float:
    """CPU of this process's finished children: wrk, which has exited when a run ends."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--server", choices=common.APP_SERVERS, default="gunicorn-gthread")
    parser.add_argument(
        "--direct", action="store_true", help="wrk straight to the app server, without nginx"
    )
    parser.add_argument("--devices", type=int, default=64)
    parser.add_argument(
        "--batches-per-device",
        type=int,
        default=50,
        help="pre-generated batches per device (the first 2 rounds warm up; 3 million "
        "points, so that 200,000 points/s for 15 s never runs out of new points)",
    )
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    args = parser.parse_args()

    database_url = common.recreate_database(DATABASE)
    env = common.production_env(database_url)
    common.manage(env, "migrate", "--no-input", "-v0")
    work = Path(tempfile.mkdtemp(prefix="emporium-bench-ingest-"))
    work.chmod(0o755)  # nginx workers run as nobody and must reach the prefix
    tokens_file = work / "tokens.txt"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.seed_ingest",
            "--devices",
            str(args.devices),
            "--tokens",
            str(tokens_file),
        ],
        cwd=common.ROOT,
        env=env,
        check=True,
    )
    tokens = {
        int(device_id): token
        for device_id, token in (line.split() for line in tokens_file.read_text().splitlines())
    }
    generation_started = time.monotonic()
    warmup_file, bodies_file, measured_bodies = generate_bodies(
        tokens, batches_per_device=args.batches_per_device, directory=work, warmup_rounds=2
    )
    print(
        f"generated {len(measured_bodies) * BATCH:,} points to send "
        f"({bodies_file.stat().st_size / 2**20:.0f} MiB) in "
        f"{time.monotonic() - generation_started:.0f} s",
        flush=True,
    )

    script = common.ROOT / "bench" / "lua" / "ingest.lua"
    app_port = common.free_port()
    front_port = app_port if args.direct else common.free_port()
    front = (
        contextlib.nullcontext()
        if args.direct
        else common.nginx(
            nginx_conf(work / "nginx", listen_port=front_port, app_port=app_port),
            work / "nginx",
        )
    )
    with bench_lock():
        with (
            common.app_server(
                env,
                kind=args.server,
                port=app_port,
                workers=args.workers,
                threads=args.threads,
                ready_path="/api/categories/",
            ),
            front,
        ):
            base = f"http://127.0.0.1:{front_port}"
            warmup = common.wrk(
                base,
                script=script,
                args=[str(warmup_file), "2"],
                connections=args.connections,
                threads=2,
                seconds=3,
            )
            before = stored_points()
            cpu_before, machine_before = common.process_cpu(), _machine_cpu_seconds()
            wrk_before = _children_cpu_seconds()
            window_started = time.monotonic()
            result = common.wrk(
                base,
                script=script,
                args=[str(bodies_file), "2"],
                connections=args.connections,
                threads=2,
                seconds=args.seconds,
            )
            cpu_after, machine_after = common.process_cpu(), _machine_cpu_seconds()
            wrk_cpu = _children_cpu_seconds() - wrk_before
            window = time.monotonic() - window_started
            after = stored_points()
        seconds = result.requests / result.requests_per_second
        stored_per_second = (after - before) / seconds
        posted = result.ok * BATCH
        reference = copy_reference(database_url, measured_bodies, max_rows=args.reference_rows)
    common.psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    shutil.rmtree(work, ignore_errors=True)  # a few hundred MiB of bodies

    common.print_table(
        [
            (f"HTTP batches of {BATCH} (requests)", result),
            ("HTTP ingestion, new rows stored (points)", stored_per_second),
            (f"reference: binary COPY, {BATCH}/tx (rows)", reference),
        ]
    )
    print(f"ratio HTTP ingestion / raw COPY: {stored_per_second / reference:.2f}")
    sides = {**cpu_split(cpu_before, cpu_after), "wrk": wrk_cpu}
    machine = machine_after - machine_before
    batches = max(result.requests, 1)
    print(
        f"CPU ms per batch ({'direct' if args.direct else 'through nginx'}, {args.server}): "
        + ", ".join(f"{side} {used * 1000 / batches:.1f}" for side, used in sides.items())
        + f"; whole machine {machine * 1000 / batches:.1f} "
        f"({machine / window:.2f} of {os.cpu_count()} cores busy)"
    )
    print(
        f"points stored {after - before:,} in {seconds:.1f} s; points in 2xx answers {posted:,}; "
        f"4xx {result.client_errors}, 5xx {result.server_errors}, "
        f"socket errors {result.socket_errors}"
    )
    if posted > after - before:
        print(
            "note: more points were answered than stored: the bodies ran out and were re-sent "
            "(duplicates), or requests were still running when the count was taken"
        )
    target = 150_000
    verdict = "meets" if stored_per_second >= target else "is below"
    print(f"{stored_per_second:,.0f} points/s {verdict} the {target:,} points/s target")
    path = common.save(
        "ingest",
        {
            "result": common.as_dict(result),
            "warmup": common.as_dict(warmup),
            "stored_points": after - before,
            "stored_points_per_second": stored_per_second,
            "reference_copy_rows_per_second": reference,
            "cpu_seconds": {**sides, "machine": machine},
            "through_nginx": not args.direct,
            "settings": vars(args),
        },
    )
    print(f"saved {path.relative_to(common.ROOT)}")
    if result.server_errors or result.client_errors:
        raise SystemExit("ingestion benchmark saw error answers")


if __name__ == "__main__":
    main()
