"""Bulk catalog import: rows/s and peak memory of ``manage.py import_products``, beside COPY.

For each size (100,000 and 1,000,000 rows by default) a CSV of products is
generated into ``var/`` (kept between runs; the same seed gives the same file),
a fresh database on the production profile is migrated, and the file is
imported by ``manage.py import_products FILE`` in a process of its own: the
same code the import task runs (streamed to the import directory, hashed,
validated, upserted by SKU in chunks of ``CATALOG_IMPORT_CHUNK_ROWS`` rows,
1,000 unless the environment sets it, categories made from their paths, search
triggers firing). Figures:

* rows/s from the command's start to its end (upload, processing, its report);
* peak resident memory of that process (``wait4``'s ``ru_maxrss``), which must
  stay flat whatever the file's size;
* a second import of the same rows in a file that differs by one trailing
  blank line (a new content hash), so every row is compared and none written;
* CPU time per row of the import process (``wait4``'s user + system time) and
  of the PostgreSQL backends serving the benchmark's database (read from
  ``/proc`` every 0.2 s while the import runs), which say which side bounds
  the import: their sum is the wall time when nothing overlaps.

The reference, measured in the same run on the same database: PostgreSQL
``COPY`` of the same rows, already resolved to category ids, into a scratch
table made ``LIKE catalog_product INCLUDING ALL`` (the same columns, defaults,
constraints and indexes, without the search triggers). The ratios printed are
import/COPY.

Run it alone: ``flock /tmp/emporium-bench.lock make bench SCENARIO=import``, or

    python -m bench.catalog_import [--rows 100000 1000000] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import common

DATABASE = "emporium_bench_import"
VAR = common.ROOT / "var"
WORDS = [
    "wireless",
    "steel",
    "wooden",
    "leather",
    "compact",
    "portable",
    "classic",
    "modern",
    "vintage",
    "smart",
    "ergonomic",
    "foldable",
    "waterproof",
    "premium",
    "organic",
    "bamboo",
    "ceramic",
    "glass",
    "copper",
    "linen",
    "lamp",
    "chair",
    "table",
    "kettle",
    "speaker",
    "headphones",
    "backpack",
    "jacket",
    "bottle",
    "blender",
    "keyboard",
    "monitor",
    "camera",
    "drill",
    "hammer",
    "tent",
    "blanket",
    "pillow",
    "mug",
    "teapot",
    "clock",
]
DEPARTMENTS = ("Home", "Garden", "Electronics", "Sports", "Kitchen", "Office", "Toys", "Tools")
HEADER = ["sku", "name", "description", "price", "stock", "category", "attributes"]


def category_paths() -> list[str]:
    """8 x 5 x 5 = 200 three-level paths."""
    return [
        f"{department} > {department} group {group} > Shelf {shelf}"
        for department in DEPARTMENTS
        for group in range(5)
        for shelf in range(5)
    ]


def csv_generate(rows: int) -> Path:
    path = VAR / f"bench-import-{rows}.csv"
    if path.exists():
        return path
    VAR.mkdir(exist_ok=True)
    generator = random.Random(rows)
    paths = category_paths()
    partial = path.with_suffix(".part")
    with partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        for number in range(rows):
            words = generator.sample(WORDS, 3)
            writer.writerow(
                [
                    f"BENCH-{number:08d}",
                    " ".join(words).capitalize(),
                    f"A {words[0]} {words[2]} made of {generator.choice(WORDS)}, "
                    f"{generator.randint(1, 90)} cm, for everyday use.",
                    f"{generator.randint(100, 99_999) / 100:.2f}",
                    generator.randint(0, 500),
                    generator.choice(paths),
                    json.dumps({"colour": generator.choice(WORDS[:10]), "weight_g": number % 997}),
                ]
            )
    partial.rename(path)
    return path


@dataclass
class ImportRun:
    seconds: float
    peak_rss: int  # bytes
    process_cpu: float  # seconds, the import process
    backend_cpu: float  # seconds, the PostgreSQL backends serving DATABASE
    report: str


def import_run(env: dict[str, str], path: Path) -> ImportRun:
    """Wall time, peak RSS, CPU and the report of one ``import_products`` process."""
    log = VAR / "bench-import.log"
    backends: dict[int, float] = {}  # pid -> CPU seconds last seen
    done = threading.Event()
    serves_database = common.postgres_backend(DATABASE)

    def watch_backends() -> None:
        # A backend's CPU is readable only while it lives, so it is sampled.
        before = {
            pid for pid, (command, _) in common.process_cpu().items() if serves_database(command)
        }
        while not done.wait(0.2):
            for pid, (command, seconds) in common.process_cpu().items():
                if pid not in before and serves_database(command):
                    backends[pid] = seconds

    watcher = threading.Thread(target=watch_backends, daemon=True)
    watcher.start()
    with log.open("wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "manage.py", "import_products", str(path), "--no-progress"],
            cwd=common.ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        # wait4 rather than Popen.wait: it also gives the child's own peak RSS and CPU.
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    watcher.join()
    report = log.read_text(errors="replace").strip()
    log.unlink()
    if process.returncode:
        raise SystemExit(f"import_products failed:\n{report}")
    return ImportRun(
        seconds=elapsed,
        peak_rss=usage.ru_maxrss * 1024,
        process_cpu=usage.ru_utime + usage.ru_stime,
        backend_cpu=sum(backends.values()),
        report=report,
    )


def copy_reference(url: str, path: Path) -> float:
    """Seconds to COPY the same rows into a scratch table shaped like catalog_product."""
    with psycopg.connect(url, autocommit=True) as connection:
        ids = _category_ids(connection)
        connection.execute("DROP TABLE IF EXISTS bench_import_reference")
        connection.execute(
            "CREATE TABLE bench_import_reference (LIKE catalog_product INCLUDING ALL)"
        )
        buffer = io.StringIO()
        now = datetime.now(UTC).isoformat()
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.reader(file)
            next(reader)
            out = csv.writer(buffer)
            for sku, name, description, price, stock, category, attributes in reader:
                out.writerow(
                    [
                        sku,
                        name,
                        description,
                        price,
                        stock,
                        ids[category],
                        attributes,
                        0,
                        0,
                        now,
                        now,
                    ]
                )
        data = buffer.getvalue().encode()
        del buffer
        columns = (
            "sku, name, description, price, stock_quantity, category_id, attributes, "
            "review_count, rating_total, created_at, updated_at"
        )
        started = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.copy(
                f"COPY bench_import_reference ({columns}) FROM STDIN WITH (FORMAT csv)"
            ) as copy,
        ):
            for offset in range(0, len(data), 1 << 20):
                copy.write(data[offset : offset + (1 << 20)])
        elapsed = time.perf_counter() - started
        connection.execute("DROP TABLE bench_import_reference")
    return elapsed


def _category_ids(connection: psycopg.Connection[Any]) -> dict[str, int]:
    rows = connection.execute("SELECT id, name, parent_id FROM catalog_category").fetchall()
    by_id = {pk: (name, parent) for pk, name, parent in rows}

    def path_of(pk: int) -> str:
        names = []
        current: int | None = pk
        while current is not None:
            name, current = by_id[current]
            names.append(name)
        return " > ".join(reversed(names))

    return {path_of(pk): pk for pk in by_id}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    options = parser.parse_args()

    results: list[dict[str, Any]] = []
    for rows in options.rows:
        path = csv_generate(rows)
        url = common.recreate_database(DATABASE)
        env = common.production_env(url, CATALOG_IMPORT_DIR=str(VAR / "bench-imports"))
        common.manage(env, "migrate", "-v0")
        first = import_run(env, path)
        print(first.report, flush=True)
        again = VAR / f"bench-import-{rows}-again.csv"
        # Copied, not read into this process: the import's child starts by vfork, and
        # its ru_maxrss counts this process's peak resident memory from before the exec.
        shutil.copyfile(path, again)
        with again.open("ab") as file:
            file.write(b"\n")
        unchanged = import_run(env, again)
        print(unchanged.report, flush=True)
        again.unlink()
        copy_seconds = copy_reference(url, path)
        size = path.stat().st_size
        result = {
            "rows": rows,
            "file_mb": round(size / 1e6, 1),
            "import_seconds": round(first.seconds, 2),
            "import_rows_per_second": round(rows / first.seconds),
            "peak_rss_mb": round(first.peak_rss / 2**20, 1),
            "import_process_cpu_us_per_row": round(first.process_cpu / rows * 1e6),
            "import_backend_cpu_us_per_row": round(first.backend_cpu / rows * 1e6),
            "unchanged_seconds": round(unchanged.seconds, 2),
            "unchanged_rows_per_second": round(rows / unchanged.seconds),
            "unchanged_peak_rss_mb": round(unchanged.peak_rss / 2**20, 1),
            "unchanged_process_cpu_us_per_row": round(unchanged.process_cpu / rows * 1e6),
            "unchanged_backend_cpu_us_per_row": round(unchanged.backend_cpu / rows * 1e6),
            "copy_seconds": round(copy_seconds, 2),
            "copy_rows_per_second": round(rows / copy_seconds),
            "import_over_copy_time": round(first.seconds / copy_seconds, 2),
        }
        results.append(result)
        print(json.dumps(result), flush=True)
        for stored in (VAR / "bench-imports").glob("*"):
            stored.unlink()

    print()
    print(
        f"{'rows':>10} {'import rows/s':>14} {'peak RSS MB':>12} {'CPU us/row py+pg':>17} "
        f"{'unchanged rows/s':>17} {'COPY rows/s':>12} {'import/COPY time':>17}"
    )
    for result in results:
        cpu = f"{result['import_process_cpu_us_per_row']}+{result['import_backend_cpu_us_per_row']}"
        print(
            f"{result['rows']:>10,} {result['import_rows_per_second']:>14,} "
            f"{result['peak_rss_mb']:>12} {cpu:>17} {result['unchanged_rows_per_second']:>17,} "
            f"{result['copy_rows_per_second']:>12,} {result['import_over_copy_time']:>17}"
        )
    print(f"saved {common.save('catalog_import', {'results': results})}")
    if not options.keep:
        common.psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


if __name__ == "__main__":
    main()
