"""Search under load: many shoppers at once through nginx, on 1,000,000 products.

The catalog is bench.search's (a 3-level tree of 1,110 categories, names and
descriptions from a fixed vocabulary), in a database of its own copied from
``emporium_bench_search`` when that one is seeded (a template copy takes
seconds; seeding takes minutes), else seeded here. The app runs under granian
(2 workers, production settings, the response cache on) behind nginx, whose
configuration is generated around deploy/nginx/emporium-locations.conf, the
routes and micro-cache production uses, with an access log giving each
request's time. wrk sends every phase over 64 connections:

  mix       (run once unmeasured to warm the caches, then measured)
            searches drawn from a Zipf distribution over the benchmark
            vocabulary: each word of a 1- to 3-word query drawn by its rank's
            weight 1/rank, so a head of popular queries repeats and a long tail
            comes once; 10 % with one misspelt word, 20 % with a category,
            price or stock filter, 10 % asking for page 2 to 5, and 10 % of all
            requests for the /search/ HTML page. Per-class p50/p95/p99 come
            from nginx's access log (time from the request's first byte to the
            response's last), the overall rate and latency from wrk.
  suggest   autocomplete as typed: every prefix of a Zipf-drawn word, asked
            as the search page asks (the last word only); once from cold
            caches, then again in the steady state that leaves, each as fast
            as the server answers. Then the same at an offered rate of about
            3,300 requests a second (each connection pausing between its
            requests, bench/lua/paced.lua): the latency a keystroke sees at
            the target load rather than the load generator's own queueing at
            saturation; once in the steady state, once more after the
            vocabulary's cache namespace is bumped (as a product rename does).
  popular   one popular query repeated, beside the cached product list (the
            same run, the same nginx): through the micro-cache, and through
            nginx to the app's own cache.
  reference an uncached-looking product-by-id read (random ids of 1,000,000:
            the app cache misses) and the home page, a minimal Django view,
            under the same app server.

CPU per request is read from /proc for nginx, the app server, PostgreSQL,
Redis and wrk over each phase.

    python -m bench.search_load [--seconds 15] [--connections 64]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import common, search

DATABASE = "emporium_bench_search_load"
PRODUCTS = 1_000_000
SCRIPT = common.ROOT / "bench" / "lua" / "paths.lua"
PACED_SCRIPT = common.ROOT / "bench" / "lua" / "paced.lua"
# The autocomplete's target load: at least 3,000 requests a second over the
# connections; each connection pauses this long after each answer (64 x 1 s /
# 19 ms = 3,368 a second, less the answers' own time).
PACED_PAUSE_MS = 19
LOCATIONS = common.ROOT / "deploy" / "nginx" / "emporium-locations.conf"
WORKERS = 2
ZIPF_EXPONENT = 1.0


def prepare_database() -> dict[str, str]:
    """The 1,000,000-product catalog in DATABASE: copied from bench.search's, or seeded."""
    url = common.database_url(DATABASE)
    env = common.production_env(url, DATABASE_CONN_MAX_AGE="600")
    try:
        seeded = int(common.psql("SELECT count(*) FROM catalog_product", DATABASE)) >= PRODUCTS
    except subprocess.CalledProcessError:
        seeded = False
    if not seeded:
        try:
            source = int(common.psql("SELECT count(*) FROM catalog_product", search.DATABASE))
        except subprocess.CalledProcessError:
            source = 0
        common.psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        if source >= PRODUCTS:
            print(f"copying {search.DATABASE} (template)", flush=True)
            common.psql(f'CREATE DATABASE "{DATABASE}" TEMPLATE "{search.DATABASE}"')
        else:
            common.psql(f'CREATE DATABASE "{DATABASE}"')
            common.manage(env, "migrate", "--no-input", "-v0")
            print(f"seeding {PRODUCTS:,} products", flush=True)
            search.seed(PRODUCTS, database=DATABASE)
    common.manage(env, "migrate", "--no-input", "-v0")
    common.psql("ANALYZE", DATABASE)
    # Nothing an earlier run cached is served: bump the catalog namespace.
    common.manage(
        env,
        "shell",
        "-c",
        "from emporium.catalog import caching; from emporium.core.cache import namespace_bump; "
        "namespace_bump(caching.CATALOG, alias=caching.cache_policy().alias)",
    )
    return env


class Zipf:
    """Draws items by rank with weight 1/rank**s (the order given is the rank)."""

    def __init__(self, items: list[str], rng: random.Random, exponent: float = ZIPF_EXPONENT):
        self.items = items
        self.rng = rng
        self.weights = [1 / (rank**exponent) for rank in range(1, len(items) + 1)]

    def draw(self, count: int = 1) -> list[str]:
        return self.rng.choices(self.items, weights=self.weights, k=count)

    def distinct(self, count: int) -> list[str]:
        drawn: list[str] = []
        while len(drawn) < count:
            word = self.draw()[0]
            if word not in drawn:
                drawn.append(word)
        return drawn


def vocabulary(rng: random.Random) -> list[str]:
    """The benchmark's name words in a fixed random popularity order."""
    words = list(dict.fromkeys(search.NOUNS + search.ADJECTIVES + search.MATERIALS))
    rng.shuffle(words)
    return words


def mix_paths(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(class, path) for the realistic mix."""
    zipf = Zipf(vocabulary(rng), rng)
    made: list[tuple[str, str]] = []
    for _ in range(count):
        words = zipf.distinct(rng.choices([1, 2, 3], weights=[4, 4, 2])[0])
        query = " ".join(words)
        kind = f"{len(words)} word{'s' if len(words) > 1 else ''}"
        if rng.random() < 0.10:
            changed = search.misspelt(query, rng)
            if changed != query:
                query, kind = changed, "misspelt"
        params: dict[str, Any] = {"q": query}
        if rng.random() < 0.20:
            choice = rng.random()
            if choice < 0.4:
                params["category"] = rng.randint(1, 110)  # a department or a section
            elif choice < 0.7:
                low = rng.choice([0, 10, 50, 100])
                params.update(min_price=low, max_price=low + rng.choice([20, 100, 400]))
            else:
                params["in_stock"] = "true"
            kind = "filtered" if kind != "misspelt" else kind
        if rng.random() < 0.10:
            params["page"] = rng.randint(2, 5)
            kind = "page 2+" if kind not in ("misspelt", "filtered") else kind
        if rng.random() < 0.10:
            made.append(("HTML page", "/search/?" + urlencode(params)))
        else:
            made.append((kind, "/api/search/?" + urlencode(params)))
    return made


def suggest_paths(count: int, rng: random.Random) -> list[str]:
    """Keystrokes: every prefix of Zipf-drawn words, as the search page asks for them
    (the last word only, whatever was typed before it: frontend/src/suggest.js)."""
    zipf = Zipf(vocabulary(rng), rng)
    made: list[str] = []
    while len(made) < count:
        word = zipf.draw()[0]
        for end in range(1, len(word) + 1):
            made.append("/api/search/suggest/?" + urlencode({"q": word[:end]}))
    return made[:count]


def vocabulary_changed(env: dict[str, str]) -> None:
    """Bumps the cache namespace of the words of product names, as a product rename does."""
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.conf import settings;"
            "from emporium.catalog.caching import VOCABULARY;"
            "from emporium.core.cache import namespace_bump;"
            "assert namespace_bump(VOCABULARY, alias=settings.CATALOG_CACHE_ALIAS)",
        ],
        cwd=common.ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def nginx_conf(prefix: Path, *, app_port: int, port: int) -> str:
    """deploy/nginx's routes and micro-cache on loopback, with a timed access log."""
    locations = prefix / "emporium-locations.conf"
    shutil.copy(LOCATIONS, locations)
    return (
        common.nginx_preamble(prefix, app_port=app_port)
        + f"""
    default_type application/json;
    upstream emporium_ws {{ server 127.0.0.1:{common.free_port()} max_fails=0; }}
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=emporium_catalog:20m
                     max_size=512m inactive=60s use_temp_path=off;
    # Every simulated shopper comes from 127.0.0.1: the per-client limits the
    # locations apply keep their names but count per connection, at a rate no
    # connection reaches, so they never refuse a request here.
    limit_req_zone $connection zone=emporium_per_client:10m rate=1000000r/s;
    limit_conn_zone $connection zone=emporium_connections:10m;
    map "$http_authorization$http_cookie" $emporium_skip_cache {{
        ""      0;
        default 1;
    }}
    log_format timed '$request_time $status $upstream_cache_status $request_uri';
    server {{
        listen 127.0.0.1:{port};
        access_log {prefix}/logs/access.log timed buffer=256k flush=1s;
        include {locations};
    }}
}}
"""
    )


def settle(base: str, timeout: float = 120) -> None:
    """Waits until the app server and PostgreSQL are idle: requests nginx still
    had in flight when wrk stopped (a search phase leaves a queue behind) must
    not be counted in the next phase."""
    busy = {"app": common.app_server_process, "db": common.postgres_backend(DATABASE)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = common.process_cpu()
        time.sleep(0.5)
        spent = common.cpu_spent(before, common.process_cpu(), busy)
        if sum(spent.values()) < 0.05:  # under a tenth of a core
            break
    common.wait_http(f"{base}/", timeout=timeout)


def read_log(log: Path, start: int) -> list[tuple[float, str, str, str]]:
    """(seconds, status, cache status, uri) of each line written past ``start``."""
    lines = []
    with log.open() as handle:
        handle.seek(start)
        for line in handle:
            seconds, status, cache_status, uri = line.rstrip("\n").split(" ", 3)
            lines.append((float(seconds), status, cache_status, uri))
    return lines


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


SIDES = {
    "nginx": common.nginx_worker,
    "app server": common.app_server_process,
    "PostgreSQL": common.postgres_backend(DATABASE),
    "Redis": lambda command: command.startswith("redis-server"),
    "wrk (client)": lambda command: command.startswith("wrk "),
}


def measured(
    name: str,
    base: str,
    paths: list[str],
    *,
    seconds: int,
    connections: int,
    log: Path | None = None,
    pause_ms: int = 0,
) -> tuple[common.LoadResult, dict[str, float], list[tuple[float, str, str, str]]]:
    """One wrk phase: its result, CPU ms per request by process, and its log lines.

    With ``pause_ms`` each connection pauses that long after each answer
    (an offered rate); without, wrk sends as fast as the answers come.
    """
    paths_file = Path(tempfile.mkstemp(prefix="emporium-search-load-", suffix=".txt")[1])
    paths_file.write_text("\n".join(paths) + "\n")
    settle(base)
    if log is not None:
        time.sleep(1.5)  # what the previous phase logged is flushed before this one starts
    start = log.stat().st_size if log and log.exists() else 0
    before = common.process_cpu()
    os.environ["WRK_PAUSE_MS"] = str(pause_ms)
    result = common.wrk(
        base,
        script=PACED_SCRIPT if pause_ms else SCRIPT,
        args=[str(paths_file)],
        connections=connections,
        threads=2,
        seconds=seconds,
    )
    after = common.process_cpu()
    paths_file.unlink()
    spent = common.cpu_spent(before, after, SIDES)
    per_request = {side: 1000 * value / max(1, result.requests) for side, value in spent.items()}
    lines: list[tuple[float, str, str, str]] = []
    if log is not None:
        time.sleep(1.5)  # the access log is flushed every second
        lines = read_log(log, start)
    print(
        f"  {name}: {result.requests_per_second:.0f} req/s, p99 {result.p99_ms:.1f} ms, "
        f"{result.client_errors} 4xx, {result.server_errors} 5xx, "
        f"{result.socket_errors} socket errors",
        flush=True,
    )
    return result, per_request, lines


def class_table(
    classes: dict[str, str], lines: list[tuple[float, str, str, str]]
) -> dict[str, dict[str, Any]]:
    by_class: dict[str, list[float]] = defaultdict(list)
    hits: dict[str, int] = defaultdict(int)
    statuses: dict[str, int] = defaultdict(int)
    for seconds, status, cache_status, uri in lines:
        kind = classes.get(uri, "other")
        statuses[f"{kind} {status}"] += 1
        if status != "200":
            continue
        by_class[kind].append(seconds * 1000)
        hits[kind] += cache_status == "HIT"
    table: dict[str, dict[str, Any]] = {}
    for kind, samples in sorted(by_class.items(), key=lambda item: -len(item[1])):
        table[kind] = {
            "n": len(samples),
            "nginx_hits": hits[kind],
            "p50_ms": percentile(samples, 0.50),
            "p95_ms": percentile(samples, 0.95),
            "p99_ms": percentile(samples, 0.99),
        }
    table["_statuses"] = dict(statuses)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    seconds, connections = args.seconds, args.connections

    rng = random.Random(17)
    mix = mix_paths(200_000, rng)
    classes = {path: kind for kind, path in mix}
    keystrokes = suggest_paths(100_000, rng)
    popular_query = "/api/search/?" + urlencode({"q": vocabulary(random.Random(17))[0]})

    work = Path(tempfile.mkdtemp(prefix="emporium-bench-search-load-"))
    work.chmod(0o755)  # nginx workers run as nobody and must reach the prefix
    prefix = work / "nginx"
    prefix.mkdir()
    app_port, port = common.free_port(), common.free_port()
    conf = nginx_conf(prefix, app_port=app_port, port=port)
    via_nginx = f"http://127.0.0.1:{port}"
    log = prefix / "logs" / "access.log"
    results: dict[str, Any] = {"products": PRODUCTS, "connections": connections}
    rows: list[tuple[str, common.LoadResult | float]] = []
    cpu: dict[str, dict[str, float]] = {}

    with contextlib.ExitStack() as stack:
        stack.enter_context(common.bench_lock())  # seeding is no time for another's load either
        env = prepare_database()
        stack.enter_context(common.nginx(conf, prefix))
        stack.enter_context(
            common.app_server(
                env, kind="granian", port=app_port, workers=WORKERS, ready_path="/api/categories/"
            )
        )
        # Warm PostgreSQL's buffers and the workers, not the caches (a distinct sample).
        measured(
            "warm-up",
            via_nginx,
            [path for _, path in mix[-5000:]],
            seconds=3,
            connections=connections,
        )

        # References under the same app server, nginx's cache not in the path
        # (ids at random over 1,000,000 miss the app's cache too).
        ids = [f"/api/products/{random.Random(n).randint(1, PRODUCTS)}/" for n in range(50_000)]
        for name, paths in (
            ("reference: product by id", ids),
            ("reference: minimal Django view (/)", ["/"]),
        ):
            result, per_request, _ = measured(
                name, via_nginx, paths, seconds=seconds, connections=connections
            )
            rows.append((name, result))
            cpu[name] = per_request
            results[name] = common.as_dict(result)

        # The same mix unmeasured first: a shop's caches are never all cold, and
        # the head of the distribution is what they keep.
        measured(
            "search mix, warming the caches",
            via_nginx,
            [path for _, path in mix[:-5000]],
            seconds=seconds,
            connections=connections,
        )
        result, per_request, lines = measured(
            "search mix",
            via_nginx,
            [path for _, path in mix[:-5000]],
            seconds=seconds,
            connections=connections,
            log=log,
        )
        rows.append(("search: realistic mix", result))
        cpu["search: realistic mix"] = per_request
        results["mix"] = common.as_dict(result)
        results["mix_classes"] = class_table(classes, lines)

        # Keystrokes as fast as answered: from cold caches (the first visitors
        # after the words changed), then in the steady state the first pass
        # leaves behind. Then at the target rate: steady, and right after the
        # words of product names changed (the vocabulary's namespace bumped).
        for phase, name, pause_ms in (
            ("cold", "autocomplete: keystrokes, cold caches", 0),
            ("steady", "autocomplete: keystrokes, steady state", 0),
            ("paced_steady", "autocomplete: ~3,300 req/s offered, steady", PACED_PAUSE_MS),
            ("paced_cold", "autocomplete: ~3,300 req/s offered, cold", PACED_PAUSE_MS),
        ):
            if phase == "paced_cold":
                vocabulary_changed(env)
            result, per_request, lines = measured(
                name,
                via_nginx,
                keystrokes,
                seconds=seconds,
                connections=connections,
                log=log,
                pause_ms=pause_ms,
            )
            rows.append((name, result))
            cpu[name] = per_request
            results[f"suggest_{phase}"] = common.as_dict(result)
            suggest_ms = [seconds_taken * 1000 for seconds_taken, *_ in lines]
            if suggest_ms:
                results[f"suggest_{phase}_server_p99_ms"] = percentile(suggest_ms, 0.99)

        for name, path in (
            ("popular query, micro-cache", popular_query),
            ("product list, micro-cache", "/api/products/"),
        ):
            result, per_request, _ = measured(
                name, via_nginx, [path], seconds=seconds, connections=connections
            )
            rows.append((name, result))
            cpu[name] = per_request
            results[name] = common.as_dict(result)
        # Through nginx without its cache (a cookie makes nginx skip it): the app's cache.
        for name, path in (
            ("popular query, app cache", popular_query),
            ("product list, app cache", "/api/products/"),
        ):
            paths_file = Path(tempfile.mkstemp(suffix=".txt")[1])
            paths_file.write_text(path + "\n")
            settle(via_nginx)
            before = common.process_cpu()
            result = common.wrk(
                via_nginx,
                script=SCRIPT,
                args=[str(paths_file), "Cookie", "bench=1"],
                connections=connections,
                threads=2,
                seconds=seconds,
            )
            spent = common.cpu_spent(before, common.process_cpu(), SIDES)
            paths_file.unlink()
            print(
                f"  {name}: {result.requests_per_second:.0f} req/s, "
                f"{result.client_errors} 4xx, {result.server_errors} 5xx",
                flush=True,
            )
            rows.append((name, result))
            cpu[name] = {k: 1000 * v / max(1, result.requests) for k, v in spent.items()}
            results[name] = common.as_dict(result)

    common.print_table(rows)
    print()
    print(
        f"{'class (nginx access log)':<28}{'n':>8}{'cached':>8}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}"
    )
    for kind, figures in results["mix_classes"].items():
        if kind.startswith("_"):
            continue
        print(
            f"{kind:<28}{figures['n']:>8}{figures['nginx_hits']:>8}{figures['p50_ms']:>9.1f}"
            f"{figures['p95_ms']:>9.1f}{figures['p99_ms']:>9.1f}"
        )
    print()
    sides = list(SIDES)
    print(f"{'CPU ms per request':<36}" + "".join(f"{side:>13}" for side in sides))
    for name, per_request in cpu.items():
        print(f"{name:<36}" + "".join(f"{per_request[side]:>13.3f}" for side in sides))
    mix_rate = results["mix"]["requests_per_second"]
    reference = results["reference: product by id"]["requests_per_second"]
    popular = results["popular query, micro-cache"]["requests_per_second"]
    listed = results["product list, micro-cache"]["requests_per_second"]
    popular_app = results["popular query, app cache"]["requests_per_second"]
    listed_app = results["product list, app cache"]["requests_per_second"]
    print()
    print(f"mix / product-by-id reference:              {mix_rate / reference:.2f}")
    print(f"popular query / cached product list (nginx): {popular / listed:.2f}")
    print(f"popular query / cached product list (app):   {popular_app / listed_app:.2f}")
    for phase in ("cold", "steady", "paced_steady", "paced_cold"):
        server_p99 = results.get(f"suggest_{phase}_server_p99_ms")
        if server_p99 is not None:
            print(f"autocomplete p99 in nginx's log, {phase + ':':<13}   {server_p99:.1f} ms")
    for phase in ("paced_steady", "paced_cold"):
        paced = results[f"suggest_{phase}"]
        print(
            f"autocomplete {phase}: {paced['requests_per_second']:.0f} req/s,"
            f" p99 {paced['p99_ms']:.1f} ms (wrk; target >= 3,000 req/s with p99 < 20 ms)"
        )
    results["cpu_ms_per_request"] = cpu
    saved = common.save("search_load", results)
    print(f"\nresults: {saved}")
    print(json.dumps(results["mix_classes"].get("_statuses", {})))
    shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
