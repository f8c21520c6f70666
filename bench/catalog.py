"""Catalog reads on the production profile behind nginx, beside same-run references.

Seeds 100,000 products (3-level category tree) in its own database, starts
nginx in front of the app on loopback, and measures with wrk (-t2 -c64):

  app server choice   the cached default list page through nginx without its
                      micro-cache, under each available app server; the fastest
                      serves the rest of the run (docs/adr/0013-app-server.md)
  (a) cached list     GET /api/products/ through the nginx micro-cache and
                      through nginx to the app's Redis cache, beside nginx
                      serving the same bytes as a static file and a bare ASGI
                      app (uvicorn, 2 workers) answering them from memory
  (b) uncached list   a random filter combination and a random cursor on each
                      request, the app restarted with CATALOG_CACHE_ENABLED=false
                      and nginx's micro-cache not in the path
  (c) uncached detail random product ids, same uncached app
  (b), (c) again      through Django's whole request cycle (LEAN_GATEWAY_ENABLED
                      false): the same-run reference for what the gateway saves
  (d) deep pages      page 1 and page 5,000 of the default list, uncached

    python -m bench.catalog [--seconds 10] [--products 100000] [--servers uvicorn,...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from bench import common

DATABASE = "emporium_bench_catalog"
SCRIPT = common.ROOT / "bench" / "lua" / "paths.lua"
WORKERS = 2  # one per core on the reference machine


def nginx_conf(
    prefix: Path, *, app_port: int, cache_port: int, pass_port: int, static_port: int
) -> str:
    """The loopback variant of deploy/nginx/emporium.conf: same catalog caching rules, no TLS."""
    return (
        common.nginx_preamble(prefix, app_port=app_port)
        + f"""
    default_type application/json;
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=emporium_catalog:20m
                     max_size=256m inactive=60s use_temp_path=off;
    map "$http_authorization$http_cookie" $emporium_skip_cache {{
        ""      0;
        default 1;
    }}

    # Through the micro-cache, as deploy/nginx/emporium.conf configures it.
    server {{
        listen 127.0.0.1:{cache_port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $remote_addr;
        location ~ ^/api/(products|categories)/(\\d+/)?$ {{
            proxy_pass http://emporium_app;
            proxy_cache emporium_catalog;
            proxy_cache_key "$scheme$host$request_uri";
            proxy_cache_methods GET HEAD;
            proxy_cache_bypass $emporium_skip_cache;
            proxy_no_cache $emporium_skip_cache;
            proxy_cache_use_stale updating error timeout http_502 http_503;
            proxy_cache_background_update on;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 2s;
            proxy_cache_revalidate on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
        location / {{ proxy_pass http://emporium_app; }}
    }}

    # Straight through to the app: what the app itself sustains behind nginx.
    server {{
        listen 127.0.0.1:{pass_port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $remote_addr;
        location / {{ proxy_pass http://emporium_app; }}
    }}

    # The reference: the same bytes as a static file.
    server {{
        listen 127.0.0.1:{static_port};
        root {prefix}/static;
        location / {{ try_files /products.json =404; }}
    }}
}}
"""
    )


def load(base: str, paths_file: Path, seconds: int, connections: int) -> common.LoadResult:
    return common.wrk(
        base,
        script=SCRIPT,
        args=[str(paths_file)],
        connections=connections,
        threads=2,
        seconds=seconds,
    )


def fetch(url: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers (names lower-cased: servers differ in their spelling)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), {name.lower(): value for name, value in response.headers.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--servers", default=",".join(common.APP_SERVERS))
    parser.add_argument("--reuse-database", action="store_true", help="skip seeding if seeded")
    args = parser.parse_args()
    seconds, connections = args.seconds, args.connections

    database_url = common.database_url(DATABASE)
    seeded = False
    if args.reuse_database:
        try:
            seeded = int(common.psql("SELECT COUNT(*) FROM catalog_product", DATABASE)) > 0
        except subprocess.CalledProcessError:
            seeded = False
    env = common.production_env(database_url, DATABASE_CONN_MAX_AGE="600")
    if not seeded:
        common.recreate_database(DATABASE)
        common.manage(env, "migrate", "--no-input", "-v0")
        print(f"seeding {args.products} products", flush=True)
        common.manage(env, "seed_demo", "--products", str(args.products), "--no-progress")
    common.psql("VACUUM ANALYZE", DATABASE)
    # Nothing cached by an earlier run is served: bump the catalog namespace, the
    # way the app invalidates (the Redis database is shared, so never flushed).
    common.manage(
        env,
        "shell",
        "-c",
        "from emporium.catalog import caching; from emporium.core.cache import namespace_bump; "
        "namespace_bump(caching.CATALOG, alias=caching.cache_policy().alias)",
    )

    work = Path(tempfile.mkdtemp(prefix="emporium-bench-catalog-"))
    subprocess.run(
        [sys.executable, "-m", "bench.catalog_paths", str(work)],
        cwd=common.ROOT,
        env=env,
        check=True,
    )
    work.chmod(0o755)  # nginx workers run as nobody and must reach the prefix
    prefix = work / "nginx"
    (prefix / "static").mkdir(parents=True)
    app_port, cache_port, pass_port, static_port, asgi_port = (common.free_port() for _ in range(5))
    conf = nginx_conf(
        prefix,
        app_port=app_port,
        cache_port=cache_port,
        pass_port=pass_port,
        static_port=static_port,
    )
    via_cache = f"http://127.0.0.1:{cache_port}"
    via_pass = f"http://127.0.0.1:{pass_port}"
    page_1 = work / "page_1.txt"
    servers = [kind for kind in args.servers.split(",") if kind]
    unavailable = [kind for kind in servers if not common.server_available(kind)]
    servers = [kind for kind in servers if kind not in unavailable]
    if not servers:
        raise SystemExit(f"no app server available among {args.servers}")
    if not common.server_available("uvicorn"):
        # Not in requirements.lock yet (docs/adr/0013-app-server.md): the reference needs it.
        raise SystemExit("the bare ASGI reference needs uvicorn: pip install 'uvicorn[standard]'")
    results: dict[str, Any] = {"unavailable_servers": unavailable}

    with common.nginx(conf, prefix), common.bench_lock():
        # The app server, chosen by the cached list through nginx (no micro-cache).
        by_server: dict[str, common.LoadResult] = {}
        for kind in servers:
            with common.app_server(
                env, kind=kind, port=app_port, workers=WORKERS, ready_path="/api/categories/"
            ):
                fetch(via_pass + "/api/products/")  # fills the cache
                load(via_pass, page_1, 2, connections)  # warm-up
                by_server[kind] = load(via_pass, page_1, seconds, connections)
                print(f"  {kind}: {by_server[kind].requests_per_second:.0f} req/s", flush=True)
        chosen = max(by_server, key=lambda kind: by_server[kind].requests_per_second)
        results["server_choice"] = {
            kind: common.as_dict(value) for kind, value in by_server.items()
        }
        results["chosen_server"] = chosen

        # (a) cached list and its references.
        with common.app_server(
            env, kind=chosen, port=app_port, workers=WORKERS, ready_path="/api/categories/"
        ):
            body, app_headers = fetch(via_pass + "/api/products/")
            (prefix / "static" / "products.json").write_bytes(body)
            (prefix / "static" / "products.json").chmod(0o644)
            fetch(via_cache + "/api/products/")
            _, cache_headers = fetch(via_cache + "/api/products/")
            static_body, _ = fetch(f"http://127.0.0.1:{static_port}/")
            assert static_body == body  # noqa: S101 - the reference must serve the same bytes
            load(via_cache, page_1, 2, connections)
            micro = load(via_cache, page_1, seconds, connections)
            app_cached = load(via_pass, page_1, seconds, connections)
        static = load(f"http://127.0.0.1:{static_port}", page_1, seconds, connections)
        with common.bare_asgi(
            prefix / "static" / "products.json", port=asgi_port, workers=WORKERS
        ) as bare:
            asgi_body, _ = fetch(bare + "/")
            assert asgi_body == body  # noqa: S101
            load(bare, page_1, 2, connections)
            bare_result = load(bare, page_1, seconds, connections)

        # (b)-(d) with the app's cache off and nginx's micro-cache out of the path.
        uncached_env = {**env, "CATALOG_CACHE_ENABLED": "false"}
        with common.app_server(
            uncached_env, kind=chosen, port=app_port, workers=WORKERS, ready_path="/api/categories/"
        ):
            load(via_pass, work / "uncached_list.txt", 2, connections)
            uncached_list = load(via_pass, work / "uncached_list.txt", seconds, connections)
            detail = load(via_pass, work / "detail.txt", seconds, connections)
            first_page = load(via_pass, page_1, seconds, connections)
            deep_page = load(via_pass, work / "page_5000.txt", seconds, connections)
        # The same uncached reads through Django's whole request cycle, without the
        # lean gateway in front (docs/adr/0020): what the gateway saves, same run.
        with common.app_server(
            {**uncached_env, "LEAN_GATEWAY_ENABLED": "false"},
            kind=chosen,
            port=app_port,
            workers=WORKERS,
            ready_path="/api/categories/",
        ):
            load(via_pass, work / "detail.txt", 2, connections)
            django_list = load(via_pass, work / "uncached_list.txt", seconds, connections)
            django_detail = load(via_pass, work / "detail.txt", seconds, connections)

    rows: list[tuple[str, common.LoadResult, str, float | None]] = [
        *(
            (f"choice: cached list via {kind}", value, "nginx static", None)
            for kind, value in by_server.items()
        ),
        ("(a) cached list, nginx micro-cache", micro, "nginx static", static.requests_per_second),
        (
            f"(a) cached list, app ({chosen})",
            app_cached,
            "nginx static",
            static.requests_per_second,
        ),
        (
            "(a) cached list, app vs bare ASGI",
            app_cached,
            "bare ASGI",
            bare_result.requests_per_second,
        ),
        ("    reference: nginx static file", static, "", None),
        ("    reference: bare ASGI (uvicorn)", bare_result, "", None),
        (
            "(b) uncached list, filter + cursor",
            uncached_list,
            "Django cycle",
            django_list.requests_per_second,
        ),
        (
            "(c) uncached detail, random ids",
            detail,
            "Django cycle",
            django_detail.requests_per_second,
        ),
        ("    reference: (b) via Django's cycle", django_list, "", None),
        ("    reference: (c) via Django's cycle", django_detail, "", None),
        ("(d) page 1, uncached", first_page, "", None),
        ("(d) page 5,000, uncached", deep_page, "page 1 p50", None),
    ]
    print()
    print(
        f"{'measured':<40}{'req/s':>9}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'errors':>8}"
        f"  {'reference':<14}{'ratio':>7}"
    )
    for name, value, reference_name, reference in rows:
        errors = value.server_errors + value.socket_errors + value.client_errors
        ratio = ""
        if reference:
            ratio = f"{value.requests_per_second / reference:.2f}"
        if reference_name == "page 1 p50":
            ratio = f"{value.p50_ms / first_page.p50_ms:.2f}"
        print(
            f"{name:<40}{value.requests_per_second:>9.0f}{value.p50_ms:>8.2f}{value.p90_ms:>8.2f}"
            f"{value.p99_ms:>8.2f}{errors:>8}  {reference_name:<14}{ratio:>7}"
        )
    print(f"\napp server: {chosen} ({WORKERS} workers); not installed: {unavailable or 'none'}")
    print(f"micro-cache status on a repeat read: {cache_headers.get('x-cache-status')}")
    print(f"response: {len(body)} bytes, Cache-Control: {app_headers.get('cache-control')}")

    results.update(
        {
            "settings": vars(args),
            "body_bytes": len(body),
            "cached_list_micro_cache": common.as_dict(micro),
            "cached_list_app": common.as_dict(app_cached),
            "reference_nginx_static": common.as_dict(static),
            "reference_bare_asgi": common.as_dict(bare_result),
            "ratio_micro_cache_to_static": micro.requests_per_second / static.requests_per_second,
            "ratio_app_to_static": app_cached.requests_per_second / static.requests_per_second,
            "ratio_app_to_bare_asgi": app_cached.requests_per_second
            / bare_result.requests_per_second,
            "uncached_list": common.as_dict(uncached_list),
            "uncached_detail": common.as_dict(detail),
            "uncached_list_django_cycle": common.as_dict(django_list),
            "uncached_detail_django_cycle": common.as_dict(django_detail),
            "page_1_uncached": common.as_dict(first_page),
            "page_5000_uncached": common.as_dict(deep_page),
            "ratio_page_5000_to_page_1_p50": deep_page.p50_ms / first_page.p50_ms,
        }
    )
    path = common.save("catalog", results)
    print(f"saved {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
