"""Prometheus metrics: where they are declared and how a process exposes them.

Metrics are declared once, at import, as module-level prometheus-client
objects named ``emporium_<what>`` (names and labels are Prometheus's and the
dashboards' contract, docs/adr/0031). This module declares the web processes'
own: HTTP requests, database statements per request, cache reads and
dependencies; ``domain_metrics`` declares what the shop did. Both sit in the
lowest layer of the import contract, so any app may count into them; a new
metric is declared beside them the same way. Nothing is counted when
``METRICS_ENABLED`` is off: callers ask :func:`metrics_enabled` first.

Several processes, one set of figures
    The app servers run several worker processes. With ``PROMETHEUS_MULTIPROC_DIR``
    set, prometheus-client keeps every process's values in memory-mapped files
    in that directory, and :func:`exposition` adds them up, so a scrape of any
    worker answers for the whole server. The server launcher
    (``emporium.core.servers``) gives each server start a clean directory
    (:func:`multiprocess_directory_prepare`); without one (the test client,
    ``runserver``) the values are this process's own. The directory must be
    set before prometheus-client is first imported, which is why the launcher
    sets it in the environment of the server it starts.

    A gauge of a worker that has exited must stop counting: its files are
    removed when it exits (:func:`worker_exit_register`), and any left by a
    worker that was killed are removed at the next scrape (a process id that
    no longer runs).

Processes without an HTTP port of their own (Celery worker and beat, the
outbox relay, the dashboard publisher) call :func:`metrics_serve` once at
start: it serves the same text format on ``METRICS_PORT`` (or the process's
own default port) at ``METRICS_BIND``, 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing.util
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from config.settings import env as environment

logger = logging.getLogger(__name__)

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The label of a request that matched no URL pattern (the raw path would be unbounded).
UNMATCHED_ROUTE = "unmatched"

# -- declarations: web processes ---------------------------------------------------------

HTTP_REQUESTS = Counter(
    "emporium_http_requests_total",
    "HTTP requests answered, by URL pattern, method and status code.",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "emporium_http_request_duration_seconds",
    "Time from the request reaching the application to its response, in seconds.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_REQUEST_DB_QUERIES = Histogram(
    "emporium_http_request_db_queries",
    "Database statements one request ran.",
    ["route"],
    buckets=(0, 1, 2, 3, 5, 10, 20, 50, 100),
)
HTTP_REQUEST_DB_DURATION = Histogram(
    "emporium_http_request_db_duration_seconds",
    "Time one request spent waiting on database statements, in seconds.",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CACHE_REQUESTS = Counter(
    "emporium_cache_requests_total",
    "Reads of cached responses, by namespace family, answered from the cache (hit) or not.",
    ["namespace", "result"],
)
# Set by the readiness probe; the most recent probe of any worker is the answer.
DEPENDENCY_UP = Gauge(
    "emporium_dependency_up",
    "1 if the last readiness probe reached the dependency, 0 if not.",
    ["dependency"],
    multiprocess_mode="mostrecent",
)


def metrics_enabled() -> bool:
    return bool(settings.METRICS_ENABLED)


# -- database statements per request -----------------------------------------------------


class _Tally(threading.local):
    """The statements this thread ran since its request began, and their time."""

    queries = 0
    seconds = 0.0


_tally = _Tally()


def db_tally_reset() -> None:
    """Starts counting for the request this thread is about to serve."""
    _tally.queries = 0
    _tally.seconds = 0.0


def db_tally() -> tuple[int, float]:
    """Statements and seconds counted on this thread since :func:`db_tally_reset`."""
    return _tally.queries, _tally.seconds


def _statement_timed(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        _tally.queries += 1
        _tally.seconds += time.perf_counter() - started


def db_connection_instrument(connection: Any, **kwargs: object) -> None:
    """Times every statement on ``connection`` (a ``connection_created`` receiver).

    An execute wrapper stays on the connection object for its thread's life;
    it goes first in the list, so that ``connection.execute_wrapper()`` blocks
    opened earlier still remove their own wrapper when they close.
    """
    if _statement_timed not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _statement_timed)


# -- cache reads ---------------------------------------------------------------------------

_NUMBERED = re.compile(r"\.\d+$")


def cache_read_record(namespaces: Sequence[str], *, hit: bool) -> None:
    """Counts one cached read under its narrowest namespace, without any id in it.

    ``("catalog", "catalog.product.42")`` is counted as ``catalog.product``, so
    the label has one value per kind of entry, not one per product.
    """
    namespace = _NUMBERED.sub("", namespaces[-1]) if namespaces else ""
    CACHE_REQUESTS.labels(namespace, "hit" if hit else "miss").inc()


# -- several processes ---------------------------------------------------------------------

_DIRECTORY_PREFIX = "emporium-metrics-"
_PROCESS_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def multiprocess_directory_prepare(*, server_pid: int) -> Path:
    """An empty directory for the metric files of the server ``server_pid`` is about to run.

    ``PROMETHEUS_MULTIPROC_DIR`` when the environment names one (emptied: a
    restarted server must not add up files of the previous one's workers);
    otherwise a new directory in the system's temporary directory, named after
    the server's process id. Directories of servers that no longer run are
    removed on the way.
    """
    if environment.ENV.prometheus_multiproc_dir is not None:
        directory = environment.ENV.prometheus_multiproc_dir
        directory.mkdir(parents=True, exist_ok=True)
        for file in directory.glob("*.db"):
            file.unlink(missing_ok=True)
        return directory
    base = Path(tempfile.gettempdir())
    for stale in base.glob(f"{_DIRECTORY_PREFIX}*"):
        suffix = stale.name.removeprefix(_DIRECTORY_PREFIX)
        if suffix.isdigit() and int(suffix) != server_pid and not _running(int(suffix)):
            shutil.rmtree(stale, ignore_errors=True)
    directory = base / f"{_DIRECTORY_PREFIX}{server_pid}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    return directory


def _multiprocess_directory() -> str | None:
    directory = environment.ENV.prometheus_multiproc_dir
    return str(directory) if directory is not None else None


def exited_workers_forget(directory: str) -> None:
    """Removes the live-gauge files of processes that no longer run (killed, not exited)."""
    with os.scandir(directory) as entries:
        pids = {int(m.group(1)) for e in entries if (m := _PROCESS_FILE.match(e.name))}
    for pid in pids:
        if not _running(pid):
            multiprocess.mark_process_dead(pid, directory)


class _ServerCollector(multiprocess.MultiProcessCollector):
    """Every worker's files added up, after forgetting the gauges of workers that died."""

    def collect(self) -> Any:
        exited_workers_forget(self._path)
        return super().collect()


def worker_exit_register() -> None:
    """Removes this process's live-gauge files when it exits.

    Both hooks: a process started by ``multiprocessing`` (granian's and
    uvicorn's workers) leaves through ``os._exit`` after its finalizers, never
    running ``atexit``; any other process runs ``atexit``.
    """
    directory = _multiprocess_directory()
    if directory is None:
        return
    pid = os.getpid()
    atexit.register(multiprocess.mark_process_dead, pid, directory)
    multiprocessing.util.Finalize(
        None, multiprocess.mark_process_dead, args=(pid, directory), exitpriority=0
    )


@functools.cache
def _server_registry(directory: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    _ServerCollector(registry, path=directory)
    return registry


def registry_for_exposition() -> CollectorRegistry:
    """What a scrape reads: every process's files in multiprocess mode, else this process."""
    directory = _multiprocess_directory()
    return REGISTRY if directory is None else _server_registry(directory)


def exposition() -> bytes:
    """The text format of every metric this server's processes have counted."""
    return generate_latest(registry_for_exposition())


class MetricsPortUnavailable(OSError):
    """The configured metrics port cannot be listened on (taken, or not allowed)."""


def metrics_serve(*, default_port: int) -> int:
    """Serves ``/metrics`` from a daemon thread, for a process with no HTTP port of its own.

    Listens on ``METRICS_PORT`` (``default_port`` when unset) at
    ``METRICS_BIND``; returns the port. Does nothing and returns 0 when
    ``METRICS_ENABLED`` is off or ``METRICS_PORT`` is 0. A port it cannot
    listen on raises :class:`MetricsPortUnavailable` saying which and why:
    the process is meant to stop, since one that quietly serves no metrics
    looks to Prometheus like one that is down.
    """
    configured = environment.ENV.metrics_port
    port = default_port if configured is None else configured
    if not metrics_enabled() or port == 0:
        return 0
    bind = environment.ENV.metrics_bind
    try:
        start_http_server(port, addr=bind, registry=registry_for_exposition())
    except OSError as error:
        raise MetricsPortUnavailable(
            error.errno,
            f"cannot serve /metrics on {bind}:{port} ({error.strerror or error}); set METRICS_PORT"
            " to a free port, or to 0 to serve no metrics from this process",
        ) from error
    return port


def metrics_serve_at_start(*, default_port: int, process: str) -> int:
    """:func:`metrics_serve` for a process starting up: a port it cannot have stops it.

    SystemExit with the reason, the same in a management command and in a
    Celery signal receiver (Celery logs and swallows any Exception a receiver
    raises, and the process would run on unwatched).
    """
    try:
        port = metrics_serve(default_port=default_port)
    except MetricsPortUnavailable as error:
        raise SystemExit(f"{process}: {error}") from error
    if port:
        logger.info("%s serves /metrics on port %s", process, port)
    return port
