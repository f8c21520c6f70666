"""Shared pieces of the benchmark runner: servers, load generators, references, reports.

Everything targets 127.0.0.1 only and is bounded in time. Each scenario prints
its figures beside a reference measured in the same run, because the machine
is shared and noisy: ratios travel between machines better than raw numbers.
"""

from __future__ import annotations

import base64
import io
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres", "password": "postgres"}
# psql and pgbench read it; a cluster that trusts loopback ignores it
# (deploy/local/start-services.sh gives postgres this password on a fresh one).
os.environ.setdefault("PGPASSWORD", PG["password"])


def require_tool(name: str, apt_package: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    print(f"installing {apt_package} (needed for {name})", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", apt_package], check=True)
    path = shutil.which(name)
    if not path:
        raise SystemExit(f"{name} is not available")
    return path


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ProcessCpu = dict[int, tuple[str, float]]


def process_cpu() -> ProcessCpu:
    """CPU seconds (user + system) of every process, by pid, with its command line."""
    found: ProcessCpu = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        # After the command name: state is field 0, utime 11, stime 12 (in ticks).
        found[int(entry)] = (command, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return found


def cpu_spent(
    before: ProcessCpu, after: ProcessCpu, sides: dict[str, Callable[[str], bool]]
) -> dict[str, float]:
    """CPU seconds each side spent between two ``process_cpu`` snapshots.

    A process counts for the first side whose test its command line passes;
    processes that started in between count from zero.
    """
    spent = dict.fromkeys(sides, 0.0)
    for pid, (command, seconds) in after.items():
        for side, belongs in sides.items():
            if belongs(command):
                spent[side] += seconds - before.get(pid, (command, 0.0))[1]
                break
    return spent


def nginx_worker(command: str) -> bool:
    return command.startswith("nginx: worker")


def app_server_process(command: str) -> bool:
    """The app server's master and workers (each keeps the target in its command line)."""
    return "config.wsgi" in command or "config.asgi" in command


def postgres_backend(database: str) -> Callable[[str], bool]:
    """A PostgreSQL backend serving ``database`` ("postgres: user database host state")."""
    return lambda command: command.startswith("postgres:") and f" {database} " in command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def psql(sql: str, database: str = "postgres") -> str:
    return subprocess.run(
        [
            "psql",
            "-h",
            PG["host"],
            "-p",
            PG["port"],
            "-U",
            PG["user"],
            "-d",
            database,
            "-tAqc",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def database_url(name: str) -> str:
    return f"postgres://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{name}"


def recreate_database(name: str) -> str:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')
    return database_url(name)


def wsgi_environ(
    path: str, query: str = "", *, method: str = "GET", body: bytes = b"", **headers: str
) -> dict[str, Any]:
    """A WSGI environ for a request to 127.0.0.1, for the scripts that call the app in-process.

    ``headers`` are CGI names (``HTTP_AUTHORIZATION``, ``CONTENT_TYPE``).
    """
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        **headers,
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


def wsgi_call(
    application: Callable[..., Any], environ: dict[str, Any], start_response: Callable[..., Any]
) -> None:
    """Calls the application as a server would: reads the whole answer, then closes it."""
    result = application(environ, start_response)
    b"".join(result)
    close = getattr(result, "close", None)
    if close is not None:
        close()


def production_env(database_url: str, **extra: str) -> dict[str, str]:
    """The production profile, as an operator would configure it, minus TLS (loopback)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ENCRYPTION_KEYS": "bench:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "JWT_PRIVATE_KEYS": "bench:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "BROKER_URL": os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        # Checkout is a write path; the per-user write throttle must not cap the load test.
        "THROTTLE_USER_WRITES": "100000/min",
        **extra,
    }


def manage(env: dict[str, str], *args: str, cwd: Path | None = None) -> None:
    """``manage.py`` of this tree, or of the tree at ``cwd`` (another revision)."""
    subprocess.run([sys.executable, "manage.py", *args], cwd=cwd or ROOT, env=env, check=True)


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError as error:
            if getattr(error, "code", None):  # an HTTP error status still means it is up
                return
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


@dataclass
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    ok: int
    conflicts: int
    client_errors: int
    server_errors: int
    socket_errors: int


def wrk(
    url: str, *, script: Path, args: list[str], connections: int, threads: int, seconds: int
) -> LoadResult:
    require_tool("wrk", "wrk")
    completed = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
            "--",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    line = next(line for line in completed.stdout.splitlines() if line.startswith("{"))
    data = json.loads(line)
    seconds_taken = data["duration_us"] / 1e6
    return LoadResult(
        requests_per_second=data["requests"] / seconds_taken,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        ok=data["s2xx"],
        conflicts=data["s409"],
        client_errors=data["s4xx"],
        server_errors=data["s5xx"],
        socket_errors=data["socket_errors"],
    )


def pgbench_tpcb(*, clients: int = 8, seconds: int = 10, scale: int = 10) -> float:
    """The same-run database reference: pgbench's built-in TPC-B-like transaction rate."""
    database = "emporium_bench_pgbench"
    recreate_database(database)
    base = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"]]
    subprocess.run(
        ["pgbench", *base, "-i", "-q", "-s", str(scale), database],
        check=True,
        capture_output=True,
    )
    completed = subprocess.run(
        ["pgbench", *base, "-c", str(clients), "-j", "2", "-T", str(seconds), database],
        check=True,
        capture_output=True,
        text=True,
    )
    match = re.search(r"tps = ([\d.]+)", completed.stdout)
    psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if not match:
        raise RuntimeError(completed.stdout)
    return float(match.group(1))


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": psql("SHOW server_version"),
    }


def save(scenario: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{scenario}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps({"scenario": scenario, "machine": machine(), **payload}, indent=2, default=str)
    )
    return path


def as_dict(result: LoadResult) -> dict[str, Any]:
    return asdict(result)


def print_table(rows: list[tuple[str, LoadResult | float]]) -> None:
    """One line per measured path; a bare number is a reference rate (per second)."""
    print()
    print(f"{'measured':<40}{'per s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, value in rows:
        if isinstance(value, LoadResult):
            errors = value.server_errors + value.socket_errors
            print(
                f"{name:<40}{value.requests_per_second:>10.0f}{value.p50_ms:>9.1f}"
                f"{value.p90_ms:>9.1f}{value.p99_ms:>9.1f}{errors:>8}"
            )
        else:
            print(f"{name:<40}{value:>10.0f}")


# -- app servers, nginx and the bare ASGI reference (used by bench.catalog) -------------

# How each candidate production server is started: `workers` processes (one per core).
APP_SERVERS = ("gunicorn-sync", "gunicorn-gthread", "uvicorn", "granian")


def uvicorn_command(target: str, *, port: int, workers: int) -> list[str]:
    """uvicorn on loopback as every ASGI server of the benchmarks runs: uvloop, httptools."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


# Python threads per worker, as production runs each server. granian's single
# blocking thread per worker is the production command's (docs/adr/0021).
GRANIAN_BLOCKING_THREADS = 1
GTHREAD_THREADS = 4


def app_server_command(
    kind: str, *, port: int, workers: int, threads: int | None = None
) -> list[str]:
    """The command line of app server ``kind``; ``threads`` overrides its threads per worker."""
    bind = ["127.0.0.1", str(port)]
    if kind in ("gunicorn-sync", "gunicorn-gthread"):
        threaded = kind == "gunicorn-gthread"
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            ":".join(bind),
            "--workers",
            str(workers),
            "--worker-class",
            "gthread" if threaded else "sync",
            "--threads",
            str(threads or GTHREAD_THREADS) if threaded else "1",
            "--backlog",
            "2048",
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ]
    if kind == "uvicorn":
        return uvicorn_command("config.asgi:application", port=port, workers=workers)
    if kind == "granian":
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--host",
            bind[0],
            "--port",
            bind[1],
            "--workers",
            str(workers),
            "--blocking-threads",
            str(threads or GRANIAN_BLOCKING_THREADS),
            "--log-level",
            "warning",
            "config.wsgi:application",
        ]
    raise ValueError(f"unknown app server {kind!r}")


def server_available(kind: str) -> bool:
    module = kind.split("-")[0]
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


@contextmanager
def app_server(
    env: dict[str, str],
    *,
    kind: str,
    port: int,
    workers: int,
    ready_path: str,
    threads: int | None = None,
    cwd: Path | None = None,
    target: str | None = None,
) -> Iterator[str]:
    """The app server of this tree (or of the tree at ``cwd``) serving ``target`` (or the app)."""
    command = app_server_command(kind, port=port, workers=workers, threads=threads)
    if target is not None:
        command = [target if part == "config.wsgi:application" else part for part in command]
    process = subprocess.Popen(command, cwd=cwd or ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}{ready_path}", timeout=60)
        yield base
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def nginx_preamble(
    prefix: Path, *, app_port: int, workers: str = "auto", connections: int = 4096
) -> str:
    """The start of a benchmark nginx.conf, up to and including the app upstream.

    Everything nginx writes (pid, logs, temporary files) stays under ``prefix``;
    the upstream keeps connections to the app open. The caller adds its server
    blocks and closes the ``http`` block.
    """
    return f"""
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    keepalive_requests 100000;
    upstream emporium_app {{
        server 127.0.0.1:{app_port} max_fails=0;
        keepalive 64;
        keepalive_requests 100000;
    }}
"""


@contextmanager
def nginx(conf: str, prefix: Path) -> Iterator[None]:
    """nginx as a foreground child with its own prefix: no system service is touched."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not binary:
        require_tool("nginx", "nginx-light")
        binary = shutil.which("nginx", path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
    assert binary  # noqa: S101 - require_tool exits otherwise
    for folder in ("logs", "cache", "temp"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    conf_path = prefix / "nginx.conf"
    conf_path.write_text(conf)
    # nginx's workers drop to `nobody` when started as root; they read the prefix.
    for path in (prefix, *prefix.rglob("*")):
        path.chmod(0o777 if path.is_dir() else 0o644)
    subprocess.run([binary, "-t", "-q", "-p", str(prefix), "-c", str(conf_path)], check=True)
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf_path), "-g", "daemon off;"]
    )
    try:
        time.sleep(0.5)
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: see {prefix / 'logs'}")
        yield
    finally:
        stop(process)


@contextmanager
def bare_asgi(body_file: Path, *, port: int, workers: int) -> Iterator[str]:
    """The same-run reference: uvicorn answering the same bytes from memory."""
    env = {**os.environ, "BARE_ASGI_BODY": str(body_file)}
    process = subprocess.Popen(
        uvicorn_command("bench.bare_asgi:app", port=port, workers=workers), cwd=ROOT, env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/")
        yield base
    finally:
        stop(process)


@contextmanager
def bench_lock() -> Iterator[None]:
    """Serialises load phases with any other benchmark on this machine (flock)."""
    import fcntl

    with open("/tmp/emporium-bench.lock", "w") as handle:  # noqa: S108 - agreed shared path
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
