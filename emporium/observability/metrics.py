"""Prometheus metrics: where they are declared and how a process exposes them.

Metrics are declared once, at import, as module-level prometheus-client
objects named ``emporium_<what>`` (names and labels are Prometheus's and the
dashboards' contract, docs/adr/0031). This module declares the web processes'
own: HTTP requests, database statements per request, cache reads and
dependencies; ``domain_metrics`` declares what the shop did. Both sit in the
lowest layer of the import contract, so any app may count into them; a new
metric is declared beside them the same way. With ``METRICS_ENABLED`` off
the web instrumentation is not installed (callers ask :func:`metrics_enabled`
first) and no process serves ``/metrics``; the domain's counters still count,
at well under a microsecond per event.

Several processes, one set of figures
    The app servers run several worker processes. With ``PROMETHEUS_MULTIPROC_DIR``
    set, prometheus-client keeps every process's values in memory-mapped files
    in that directory, and :func:`exposition` adds them up, so a scrape of any
    worker answers for the whole server. The server launcher
    (``emporium.core.servers``) gives each server start a clean directory
    (:func:`multiprocess_directory_prepare`); without one (the test client,
    ``runserver``) the values are this process's own. The directory must be
    set before prometheus-client is first imported, which is why the launcher
    sets it in the environment of the server it starts. Each process adds up its
    requests' samples in memory and writes them into its files once a second
    (:func:`pending_flush`, below).

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
import bisect
import functools
import glob
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
from typing import Any, NamedTuple

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
_DURATION_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_QUERIES_BOUNDS = (0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
_DB_DURATION_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HTTP_REQUEST_DURATION = Histogram(
    "emporium_http_request_duration_seconds",
    "Time from the request reaching the application to its response, in seconds.",
    ["route", "method"],
    buckets=_DURATION_BOUNDS,
)
HTTP_REQUEST_DB_QUERIES = Histogram(
    "emporium_http_request_db_queries",
    "Database statements one request ran.",
    ["route"],
    buckets=_QUERIES_BOUNDS,
)
HTTP_REQUEST_DB_DURATION = Histogram(
    "emporium_http_request_db_duration_seconds",
    "Time one request spent waiting on database statements, in seconds.",
    ["route"],
    buckets=_DB_DURATION_BOUNDS,
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


def db_connection_uninstrument(connection: Any) -> None:
    if _statement_timed in connection.execute_wrappers:
        connection.execute_wrappers.remove(_statement_timed)


# -- per-request samples, added up in memory ----------------------------------------------
#
# Written straight into prometheus-client, a request's samples (a counter, three
# histograms, a cache read) cost about 9 us of CPU in multiprocess mode: each
# write takes a lock, asks the kernel for the process id and writes the shared
# file. Where several processes share the files, each process adds its
# requests up in a dict under one lock instead, and writes the sums into the
# library once a second from a daemon thread (and when it answers a scrape,
# and when it exits). A scrape reads other workers' figures as of their last
# second; a worker killed with SIGKILL loses at most its last second.

FLUSH_SECONDS = 1.0
_NUMBERED = re.compile(r"\.\d+$")
_INFINITY = float("inf")
HttpKey = tuple[str, str, int]  # route, method, status code


class _HttpSums:
    __slots__ = ("db", "db_buckets", "duration", "duration_buckets", "queries", "queries_buckets")

    def __init__(self) -> None:
        self.duration = 0.0
        self.duration_buckets = [0] * (len(_DURATION_BOUNDS) + 1)
        self.queries = 0.0
        self.queries_buckets = [0] * (len(_QUERIES_BOUNDS) + 1)
        self.db = 0.0
        self.db_buckets = [0] * (len(_DB_DURATION_BOUNDS) + 1)


class _Pending:
    """What this process counted since its last flush."""

    def __init__(self, *, buffering: bool) -> None:
        self.buffering = buffering
        self.lock = threading.Lock()
        self.http: dict[HttpKey, _HttpSums] = {}
        self.cache: dict[tuple[str, bool], int] = {}
        self.flusher_running = False


_pending = _Pending(buffering=environment.ENV.prometheus_multiproc_dir is not None)


class _Series(NamedTuple):
    requests: Counter
    duration: Histogram
    db_queries: Histogram
    db_duration: Histogram


# The labelled series of each (route, method, status) seen, so that they are not
# looked up by their labels again.
_series: dict[HttpKey, _Series] = {}


def _series_of(key: HttpKey) -> _Series:
    series = _series.get(key)
    if series is None:
        route, method, status = key
        series = _series[key] = _Series(
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_REQUEST_DURATION.labels(route, method),
            HTTP_REQUEST_DB_QUERIES.labels(route),
            HTTP_REQUEST_DB_DURATION.labels(route),
        )
    return series


def http_request_count(key: HttpKey, *, seconds: float, queries: int, db_seconds: float) -> None:
    """One answered request: its (route, method, status), latency and database statements."""
    if not _pending.buffering:
        series = _series_of(key)
        series.requests.inc()
        series.duration.observe(seconds)
        series.db_queries.observe(queries)
        series.db_duration.observe(db_seconds)
        return
    with _pending.lock:
        sums = _pending.http.get(key)
        if sums is None:
            sums = _pending.http[key] = _HttpSums()
        sums.duration += seconds
        sums.duration_buckets[bisect.bisect_left(_DURATION_BOUNDS, seconds)] += 1
        sums.queries += queries
        sums.queries_buckets[bisect.bisect_left(_QUERIES_BOUNDS, queries)] += 1
        sums.db += db_seconds
        sums.db_buckets[bisect.bisect_left(_DB_DURATION_BOUNDS, db_seconds)] += 1
    if not _pending.flusher_running:
        _flusher_start()


def cache_read_record(namespaces: Sequence[str], *, hit: bool) -> None:
    """Counts one cached read under its narrowest namespace, without any id in it.

    ``("catalog", "catalog.product.42")`` is counted as ``catalog.product``, so
    the label has one value per kind of entry, not one per product.
    """
    namespace = namespaces[-1] if namespaces else ""
    if not _pending.buffering:
        CACHE_REQUESTS.labels(_NUMBERED.sub("", namespace), "hit" if hit else "miss").inc()
        return
    with _pending.lock:
        _pending.cache[namespace, hit] = _pending.cache.get((namespace, hit), 0) + 1
    if not _pending.flusher_running:
        _flusher_start()


def _histogram_add(histogram: Histogram, total: float, buckets: list[int]) -> None:
    """What ``observe`` would have written for each sample, written once.

    The library's own sum and per-bucket values (prometheus-client 0.26, pinned
    in the lock file); a bucket holds the samples not above its bound and above
    the one before, as ``observe`` counts them.
    """
    histogram._sum.inc(total)
    for index, count in enumerate(buckets):
        if count:
            histogram._buckets[index].inc(count)


def pending_flush() -> None:
    """Writes what this process counted since the last flush into prometheus-client."""
    with _pending.lock:
        http, cache = _pending.http, _pending.cache
        _pending.http, _pending.cache = {}, {}
    for key, sums in http.items():
        series = _series_of(key)
        series.requests.inc(sum(sums.duration_buckets))
        _histogram_add(series.duration, sums.duration, sums.duration_buckets)
        _histogram_add(series.db_queries, sums.queries, sums.queries_buckets)
        _histogram_add(series.db_duration, sums.db, sums.db_buckets)
    for (namespace, hit), count in cache.items():
        CACHE_REQUESTS.labels(_NUMBERED.sub("", namespace), "hit" if hit else "miss").inc(count)


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        try:
            pending_flush()
        except Exception:  # never let the flusher die: log, and try again next second
            logger.exception("writing the metrics of the last second failed")


def _flusher_start() -> None:
    with _pending.lock:
        if _pending.flusher_running:
            return
        _pending.flusher_running = True
    threading.Thread(target=_flush_forever, name="metrics-flush", daemon=True).start()


def _forked() -> None:
    """A forked child starts with none of its parent's counts and no flusher thread."""
    _pending.lock = threading.Lock()
    _pending.http, _pending.cache = {}, {}
    _pending.flusher_running = False


os.register_at_fork(after_in_child=_forked)


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


def _sized(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:  # a dead worker's live-gauge file, removed meanwhile
        return False


class _ServerCollector(multiprocess.MultiProcessCollector):
    """Every worker's files added up, after forgetting the gauges of workers that died.

    A process that has just created its file has not sized it yet (a new pool
    process or worker counting for the first time): an empty file holds no
    samples, and prometheus-client would fail the whole scrape reading it.
    """

    def collect(self) -> Any:
        exited_workers_forget(self._path)
        files = [path for path in glob.glob(os.path.join(self._path, "*.db")) if _sized(path)]
        return self.merge(files, accumulate=True)


@functools.cache  # once per process
def worker_exit_register() -> None:
    """Writes this process's last counts, and removes its live-gauge files, when it exits.

    Both hooks: a process started by ``multiprocessing`` (granian's and
    uvicorn's workers) leaves through ``os._exit`` after its finalizers, never
    running ``atexit``; any other process runs ``atexit``.
    """
    directory = _multiprocess_directory()
    if directory is None:
        return
    pid = os.getpid()
    # atexit runs the last registered first; finalizers the highest priority first.
    atexit.register(multiprocess.mark_process_dead, pid, directory)
    atexit.register(pending_flush)
    multiprocessing.util.Finalize(
        None, multiprocess.mark_process_dead, args=(pid, directory), exitpriority=0
    )
    multiprocessing.util.Finalize(None, pending_flush, exitpriority=1)


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
    pending_flush()  # this process's own figures up to this request
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
