"""Reads on streaming replicas, writes and everything that must be fresh on the primary.

``DATABASE_REPLICA_URLS`` adds one database alias per replica (``replica_0``,
``replica_1``, ...; ``config.settings.env.replica_database_configs``), and
:class:`PrimaryReplicaRouter` decides, per query, where a read goes. A read
goes to a replica only when all of these hold; otherwise it goes to the primary:

* it runs while an HTTP request with a safe method (GET, HEAD, OPTIONS) is
  served (:class:`ReplicaRoutingMiddleware` says so). Tasks, commands, the
  relay and every POST, PUT, PATCH and DELETE (checkout and payments among
  them) read from the primary;
* the primary's connection is not inside a transaction (``atomic``): a read
  that belongs to a transaction sees what the transaction wrote;
* nothing has been written in this request yet: after a write, the rest of the
  request reads from the primary;
* the client has not written within ``DATABASE_REPLICA_PIN_SECONDS``
  (read-your-writes: the credential a write came with pins that client to the
  primary for the window, a key in the shared cache; docs/adr/0033);
* the replica is up and its replay lag is at most
  ``DATABASE_REPLICA_MAX_LAG_SECONDS``, as a probe measured it at most
  ``DATABASE_REPLICA_HEALTH_SECONDS`` ago.

The probe runs in the request that finds the last one too old, on a
connection of its own with a one-second connect timeout, while other threads
keep the last answer; a replica that fails it is skipped until a later probe
finds it well, so it comes back by itself. A replica that dies between two
probes is caught by its connection (the replica backend,
``emporium.core.db_backends.postgresql_replica``): the read is served on a
connection of the primary and the replica is marked down at once. One that
dies under a query fails that query; the read in which it failed is answered
again, once, from the primary (:func:`replica_failover`, around the view in
:class:`ReplicaRoutingMiddleware` and around a lean read in the gateway): a
safe request may run twice, an unsafe one never reads from a replica.

Lag is exported as ``emporium_database_replication_lag_seconds{replica}`` and
``emporium_database_replica_up{replica}``, and reported by ``/readyz`` as
information: a lost replica never fails readiness, the primary serves its reads.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse

from emporium.observability.domain_metrics import REPLICA_LAG, REPLICA_UP

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PIN_KEY_PREFIX = "db-primary-pin:"
PROBE_CONNECT_TIMEOUT_SECONDS = 1
PROBE_STATEMENT_TIMEOUT_MS = 1000
# One query: is it still a replica, is its WAL receiver running, how far it has
# received and replayed the WAL (bytes from 0/0), and how old is the newest
# transaction it has replayed. (pg_stat_wal_receiver shows its row, not its
# details, to a role without pg_read_all_stats: only the row's presence is asked.)
PROBE_SQL = """
SELECT pg_is_in_recovery(),
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver),
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint,
       pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint,
       EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
"""
# How many earlier probes' received positions a monitor remembers to date what
# the replica has not replayed yet (at one probe per health interval, minutes).
PROBE_HISTORY = 1024

T = TypeVar("T")

# True while the code running may read from a replica (an HTTP request with a
# safe method, by a client not pinned, that has written nothing yet).
_replica_reads: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "emporium_replica_reads", default=False
)


# Set by the replica backend when a replica connection is lost under a query.
_replica_lost: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "emporium_replica_lost", default=False
)


def replica_aliases() -> tuple[str, ...]:
    aliases: tuple[str, ...] = tuple(getattr(settings, "DATABASE_REPLICA_ALIASES", ()))
    return aliases


# -- health ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaState:
    alias: str
    status: str  # "ok", "lagging", "down", "not_a_replica", "unknown"
    lag_seconds: float | None
    checked_at: float  # time.monotonic() of the probe

    @property
    def usable(self) -> bool:
        return self.status == "ok"


class _Monitor:
    """The probe of one replica in this process: its last answer and its own connection."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.lock = threading.Lock()
        self.connection: psycopg.Connection[Any] | None = None
        self.state = ReplicaState(alias, "unknown", None, checked_at=-math.inf)
        # (when a probe began, how far the replica had received the WAL then)
        self.received: collections.deque[tuple[float, int]] = collections.deque(
            maxlen=PROBE_HISTORY
        )

    def _connect(self) -> psycopg.Connection[Any]:
        params = connections[self.alias].get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params["connect_timeout"] = PROBE_CONNECT_TIMEOUT_SECONDS
        params["options"] = f"-c statement_timeout={PROBE_STATEMENT_TIMEOUT_MS}"
        params["application_name"] = "emporium-replica-probe"
        return psycopg.connect(autocommit=True, **params)

    def probe(self) -> ReplicaState:
        max_lag = float(settings.DATABASE_REPLICA_MAX_LAG_SECONDS)
        began = time.monotonic()
        try:
            if self.connection is None or self.connection.closed or self.connection.broken:
                self.connection = self._connect()
            row = self.connection.execute(PROBE_SQL).fetchone()
        except psycopg.Error as error:
            logger.warning("replica %s is down: %s", self.alias, type(error).__name__)
            self._close()
            return self._record("down", None)
        assert row is not None  # noqa: S101 - the query always returns one row
        in_recovery, streaming, received, replayed, since_last_replay = row
        if not in_recovery:
            # Promoted: it no longer follows the primary; reading it could show a
            # history the primary does not share.
            return self._record("not_a_replica", None)
        lag = self._lag(began, streaming, received, replayed, since_last_replay)
        return self._record("ok" if lag <= max_lag else "lagging", max(lag, 0.0))

    def _lag(
        self,
        began: float,
        streaming: bool,
        received: int | None,
        replayed: int | None,
        since_last_replay: float | None,
    ) -> float:
        """How stale the replica's data may be, in seconds (an upper bound).

        Nothing pending (all it received is replayed, its receiver running): none.
        Otherwise the age of the newest transaction it replayed bounds it, but on
        a quiet primary that age is large while the pending WAL is only a
        checkpoint or a standby snapshot, which hides nothing. So the monitor
        also remembers where each probe found the received WAL: if the replica
        has replayed what an earlier probe saw received, everything still
        pending arrived after that probe began, and the data is at most that old.
        """
        oldest = math.inf if since_last_replay is None else since_last_replay
        if not streaming or received is None or replayed is None:
            self.received.clear()
            return oldest
        if replayed >= received:
            self.received.clear()
            self.received.append((began, received))
            return 0.0
        # The latest earlier probe whose received position is already replayed.
        while len(self.received) > 1 and self.received[1][1] <= replayed:
            self.received.popleft()
        if self.received and self.received[0][1] <= replayed:
            oldest = min(oldest, began - self.received[0][0])
        self.received.append((began, received))
        return oldest

    def _close(self) -> None:
        self.received.clear()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close()
        self.connection = None

    def _record(self, status: str, lag: float | None) -> ReplicaState:
        self.state = ReplicaState(self.alias, status, lag, checked_at=time.monotonic())
        REPLICA_UP.labels(self.alias).set(1 if status == "ok" else 0)
        if lag is not None and math.isfinite(lag):
            REPLICA_LAG.labels(self.alias).set(lag)
        return self.state

    def mark_down(self) -> None:
        with self.lock:
            self._close()
            self._record("down", None)


_monitors: dict[str, _Monitor] = {}
_monitors_lock = threading.Lock()


def _monitor(alias: str) -> _Monitor:
    monitor = _monitors.get(alias)
    if monitor is None:
        with _monitors_lock:
            monitor = _monitors.setdefault(alias, _Monitor(alias))
    return monitor


def replica_state(alias: str, *, max_age: float | None = None) -> ReplicaState:
    """The replica's health, probed again when the last probe is older than ``max_age``.

    Only one thread probes a replica at a time; the others take the last answer
    instead of waiting for it.
    """
    monitor = _monitor(alias)
    age = float(settings.DATABASE_REPLICA_HEALTH_SECONDS) if max_age is None else max_age
    if time.monotonic() - monitor.state.checked_at < age:
        return monitor.state
    if not monitor.lock.acquire(blocking=False):
        return monitor.state
    try:
        if time.monotonic() - monitor.state.checked_at < age:
            return monitor.state
        return monitor.probe()
    finally:
        monitor.lock.release()


def replica_mark_down(alias: str) -> None:
    """A connection to the replica failed: skip it until a probe finds it well again."""
    _monitor(alias).mark_down()


def replica_lost(alias: str) -> None:
    """The connection to a replica broke under a query: skip the replica, and let
    :func:`replica_failover` answer the read again from the primary."""
    replica_mark_down(alias)
    _replica_lost.set(True)


def replica_failover(read: Callable[[], T]) -> T:
    """Runs ``read``; if a replica's connection broke under it, runs it again, once,
    with every read on the primary. ``read`` must be safe to repeat (a GET's view).

    Whatever the first run returned or raised is dropped: its answer was built on a
    query that failed (a 503 from the error handler, or the exception itself).
    """
    token = _replica_lost.set(False)
    try:
        try:
            answer = read()
        except Exception:
            if not _replica_lost.get():
                raise
        else:
            if not _replica_lost.get():
                return answer
        logger.warning("a replica was lost under a read; reading again from the primary")
        _replica_lost.set(False)
        with replica_reads(allowed=False):
            return read()
    finally:
        _replica_lost.reset(token)


def replicas_status() -> dict[str, dict[str, Any]]:
    """Each replica's status and lag for ``/readyz``: information only, never a failure."""
    report: dict[str, dict[str, Any]] = {}
    for alias in replica_aliases():
        state = replica_state(alias)
        lag = state.lag_seconds
        report[alias] = {
            "status": state.status,
            "lag_seconds": round(lag, 3) if lag is not None and math.isfinite(lag) else None,
        }
    return report


def monitors_reset() -> None:
    """Forgets every probe's answer and closes its connection (tests, forks)."""
    with _monitors_lock:
        for monitor in _monitors.values():
            monitor._close()
        _monitors.clear()


# -- routing -------------------------------------------------------------------------------


def _primary_in_transaction() -> bool:
    return bool(connections[DEFAULT_DB_ALIAS].in_atomic_block)


def read_alias() -> str:
    """The database the next read should go to (the router's answer, for raw SQL too)."""
    aliases = replica_aliases()
    if not aliases or not _replica_reads.get() or _primary_in_transaction():
        return DEFAULT_DB_ALIAS
    # Spread over the healthy replicas; the thread id keeps one request on one
    # replica, so its reads never go back in time from one replica to another.
    start = threading.get_ident() % len(aliases)
    for offset in range(len(aliases)):
        alias = aliases[(start + offset) % len(aliases)]
        if replica_state(alias).usable:
            return alias
    return DEFAULT_DB_ALIAS


class PrimaryReplicaRouter:
    """Django's database router: writes to the primary, reads as :func:`read_alias` says."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return read_alias()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        # What this request reads next may be what it has just written.
        _replica_reads.set(False)
        return DEFAULT_DB_ALIAS

    def allow_relation(self, first: Any, second: Any, **hints: Any) -> bool:
        return True  # the same data on every alias

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS


@contextlib.contextmanager
def replica_reads(*, allowed: bool = True) -> Iterator[None]:
    """Runs the block with replica reads allowed (or not); for tests and scripts."""
    token = _replica_reads.set(allowed)
    try:
        yield
    finally:
        _replica_reads.reset(token)


# -- read-your-writes: a client that wrote reads from the primary for a while -------------


def _client_credential(request: HttpRequest) -> str | None:
    """What identifies the client across requests: its token, else its session cookie."""
    authorization = request.META.get("HTTP_AUTHORIZATION")
    if authorization:
        return "a:" + authorization
    session = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if session:
        return "s:" + session
    return None


def _pin_key(credential: str) -> str:
    return PIN_KEY_PREFIX + hashlib.sha256(credential.encode()).hexdigest()[:32]


def client_pinned(request: HttpRequest) -> bool:
    """Whether the client wrote within the pin window (True when the cache cannot say)."""
    credential = _client_credential(request)
    if credential is None:
        return False
    try:
        return caches["default"].get(_pin_key(credential)) is not None
    except Exception:  # the cache is down: the primary is always right
        logger.warning("read-your-writes pin unreadable; reading from the primary")
        return True


def client_pin(request: HttpRequest) -> None:
    """Pins the client that sent ``request`` (a write) to the primary for the window."""
    credential = _client_credential(request)
    if credential is None:
        return
    seconds = max(1, math.ceil(float(settings.DATABASE_REPLICA_PIN_SECONDS)))
    try:
        caches["default"].set(_pin_key(credential), 1, timeout=seconds)
    except Exception:  # the cache is down: its reads go to the primary anyway
        logger.warning("read-your-writes pin not stored; the cache is unavailable")


class ReplicaRoutingMiddleware:
    """Allows replica reads for safe requests of clients without a recent write, and pins
    a client that writes. Runs on the lean gateway too (``core.gateway.RUN``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self.process_request(request)
        try:
            response = replica_failover(lambda: self.get_response(request))
        finally:
            _replica_reads.set(False)
        return self.process_response(request, response)

    def process_request(self, request: HttpRequest) -> None:
        _replica_reads.set(
            bool(replica_aliases())
            and request.method in SAFE_METHODS
            and not client_pinned(request)
        )

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        _replica_reads.set(False)
        if replica_aliases() and request.method not in SAFE_METHODS:
            client_pin(request)
        return response
