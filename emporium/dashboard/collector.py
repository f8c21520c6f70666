"""Operational figures counted in each server process and added up in the shared store.

What the dashboard shows about traffic is counted where it happens, cheaply:

* every HTTP request's duration goes into a histogram for the wall-clock second
  it finished in (``request_record``, called by ``RequestTimingMiddleware``);
* every telemetry point that ingestion stores adds to that second's point count
  (``telemetry_points_record``, called by the ingestion service).

Both only touch a dict in memory under a lock: no I/O on the request path. A
daemon thread in each process adds what was counted into the shared store once a
second, in one round trip (``SecondStore``): a Redis hash per second on the
production profile, so figures add up over every server process; the in-process
cache on the embedded profile, where there is one process. Increments are
additive, so a second may be flushed in several parts by several processes.

The histogram has fixed bucket bounds growing by 5 % from 0.1 ms, so two
histograms add up bucket by bucket and any percentile read back is within
2.5 % of the exact one (the bucket's geometric middle is reported).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.core.cache import caches

logger = logging.getLogger(__name__)

# -- the histogram -----------------------------------------------------------------------

BUCKET_RATIO = 1.05
SMALLEST_BOUND_MS = 0.1
LARGEST_BOUND_MS = 300_000.0  # five minutes; anything slower is counted as this
_BUCKET_COUNT = math.ceil(math.log(LARGEST_BOUND_MS / SMALLEST_BOUND_MS, BUCKET_RATIO)) + 1
# Upper bound (inclusive) of each bucket, in milliseconds.
BUCKET_BOUNDS_MS: tuple[float, ...] = tuple(
    SMALLEST_BOUND_MS * BUCKET_RATIO**index for index in range(_BUCKET_COUNT)
)
_LAST_BUCKET = len(BUCKET_BOUNDS_MS) - 1
# Any value in a bucket is within this factor of the bucket's geometric middle.
PERCENTILE_RELATIVE_ERROR = math.sqrt(BUCKET_RATIO) - 1


def bucket_of(duration_ms: float) -> int:
    """The index of the bucket ``duration_ms`` falls in."""
    return min(bisect.bisect_left(BUCKET_BOUNDS_MS, duration_ms), _LAST_BUCKET)


def bucket_value(index: int) -> float:
    """What a bucket stands for: the geometric middle of its bounds, in milliseconds."""
    return BUCKET_BOUNDS_MS[index] / math.sqrt(BUCKET_RATIO)


def percentile(buckets: Mapping[int, int], quantile: float) -> float | None:
    """The ``quantile`` (0 < q <= 1) of a histogram by the nearest-rank rule; None if empty.

    Nearest rank: the smallest value that at least ``ceil(q * n)`` values are
    less than or equal to. The exact value lies in the bucket found here, so the
    answer is within ``PERCENTILE_RELATIVE_ERROR`` of it.
    """
    if not 0 < quantile <= 1:
        raise ValueError("quantile must be in (0, 1]")
    total = sum(buckets.values())
    if total == 0:
        return None
    rank = math.ceil(quantile * total)
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen >= rank:
            return bucket_value(index)
    raise AssertionError("unreachable: the ranks add up to the total")


def histogram_add(into: dict[int, int], other: Mapping[int, int]) -> None:
    for index, count in other.items():
        into[index] = into.get(index, 0) + count


# -- the shared store ------------------------------------------------------------------------

# Seconds are kept a little longer than any window the dashboard reads.
SECOND_TTL_SECONDS = 180
TELEMETRY_FIELD = "t"


@dataclass
class SecondCounts:
    """What was counted in one wall-clock second: request histogram and telemetry points."""

    requests: dict[int, int] = field(default_factory=dict)
    telemetry_points: int = 0

    def is_empty(self) -> bool:
        return not self.requests and not self.telemetry_points

    def add(self, other: SecondCounts) -> None:
        histogram_add(self.requests, other.requests)
        self.telemetry_points += other.telemetry_points

    def as_fields(self) -> dict[str, int]:
        fields = {str(index): count for index, count in self.requests.items()}
        if self.telemetry_points:
            fields[TELEMETRY_FIELD] = self.telemetry_points
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> SecondCounts:
        counts = cls()
        for raw_name, raw_value in fields.items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            value = int(raw_value)
            if name == TELEMETRY_FIELD:
                counts.telemetry_points = value
            else:
                counts.requests[int(name)] = value
        return counts


class SecondStore(Protocol):
    def add(self, seconds: Mapping[int, SecondCounts]) -> None: ...

    def read(self, seconds: Iterable[int]) -> SecondCounts: ...

    def read_each(self, seconds: Iterable[int]) -> dict[int, SecondCounts]: ...


def _total(counts: Iterable[SecondCounts]) -> SecondCounts:
    total = SecondCounts()
    for each in counts:
        total.add(each)
    return total


def _second_key(second: int) -> str:
    return f"dashboard:second:{second}"


class RedisSecondStore:
    """One Redis hash per second (bucket index -> count), added to with HINCRBY."""

    def __init__(self, cache_alias: str) -> None:
        from django_redis import get_redis_connection

        self._cache = caches[cache_alias]
        self._client = get_redis_connection(cache_alias)

    def add(self, seconds: Mapping[int, SecondCounts]) -> None:
        pipeline = self._client.pipeline(transaction=False)
        for second, counts in seconds.items():
            key = self._cache.make_key(_second_key(second))
            for name, value in counts.as_fields().items():
                pipeline.hincrby(key, name, value)
            pipeline.expire(key, SECOND_TTL_SECONDS)
        pipeline.execute()

    def read(self, seconds: Iterable[int]) -> SecondCounts:
        return _total(self.read_each(seconds).values())

    def read_each(self, seconds: Iterable[int]) -> dict[int, SecondCounts]:
        """Each second's counts (empty where nothing was counted), in one round trip."""
        ordered = list(seconds)
        pipeline = self._client.pipeline(transaction=False)
        for second in ordered:
            pipeline.hgetall(self._cache.make_key(_second_key(second)))
        return {
            second: SecondCounts.from_fields(fields)
            for second, fields in zip(ordered, pipeline.execute(), strict=True)
        }


class CacheSecondStore:
    """Any Django cache: read, add and write back under a lock.

    Only correct when every writer is in this process, which is the case for
    the in-process cache of the embedded profile.
    """

    _lock = threading.Lock()

    def __init__(self, cache_alias: str) -> None:
        self._cache = caches[cache_alias]

    def add(self, seconds: Mapping[int, SecondCounts]) -> None:
        keys = {second: _second_key(second) for second in seconds}
        with self._lock:
            stored = self._cache.get_many(list(keys.values()))
            merged = {}
            for second, counts in seconds.items():
                total = SecondCounts.from_fields(stored.get(keys[second], {}))
                total.add(counts)
                merged[keys[second]] = total.as_fields()
            self._cache.set_many(merged, timeout=SECOND_TTL_SECONDS)

    def read(self, seconds: Iterable[int]) -> SecondCounts:
        return _total(self.read_each(seconds).values())

    def read_each(self, seconds: Iterable[int]) -> dict[int, SecondCounts]:
        """Each second's counts (empty where nothing was counted)."""
        keys = {second: _second_key(second) for second in seconds}
        stored = self._cache.get_many(list(keys.values()))
        return {
            second: SecondCounts.from_fields(stored.get(key, {})) for second, key in keys.items()
        }


STORE_CACHE_ALIAS = "default"


def second_store(cache_alias: str = STORE_CACHE_ALIAS) -> SecondStore:
    """The store behind ``cache_alias``: Redis hashes when it is django-redis."""
    backend = type(caches[cache_alias])
    if backend.__module__.startswith("django_redis"):
        return RedisSecondStore(cache_alias)
    return CacheSecondStore(cache_alias)


# -- counting in this process ------------------------------------------------------------


class LocalCounts:
    """What this process counted and has not flushed yet, by second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[int, SecondCounts] = {}

    def request(self, *, duration_ms: float, second: int) -> None:
        index = bucket_of(duration_ms)
        with self._lock:
            counts = self._seconds.get(second)
            if counts is None:
                counts = self._seconds[second] = SecondCounts()
            counts.requests[index] = counts.requests.get(index, 0) + 1

    def telemetry_points(self, *, count: int, second: int) -> None:
        with self._lock:
            counts = self._seconds.get(second)
            if counts is None:
                counts = self._seconds[second] = SecondCounts()
            counts.telemetry_points += count

    def take(self) -> dict[int, SecondCounts]:
        """Everything counted so far; the next counts start from zero."""
        with self._lock:
            taken, self._seconds = self._seconds, {}
        return taken

    def flush(self, store: SecondStore) -> int:
        """Adds the counts to ``store``; returns how many seconds were written.

        If the store fails, the counts are dropped rather than kept: they are
        figures for a live view, and piling them up during an outage would only
        grow memory and then write a burst that no window reads any more.
        """
        taken = self.take()
        if taken:
            store.add(taken)
        return len(taken)


_local = LocalCounts()
_flusher_lock = threading.Lock()
_flusher_pid: int | None = None
FLUSH_OFFSET_SECONDS = 0.05  # just after each second ends
_FAILURE_LOG_INTERVAL_SECONDS = 60.0


def _flush_forever(counts: LocalCounts) -> None:
    last_failure_logged = 0.0
    store: SecondStore | None = None
    while True:
        now = time.time()
        time.sleep(math.floor(now) + 1 + FLUSH_OFFSET_SECONDS - now)
        try:
            store = store or second_store()
            counts.flush(store)
        except Exception:  # a failing store must never end the thread
            if time.monotonic() - last_failure_logged > _FAILURE_LOG_INTERVAL_SECONDS:
                last_failure_logged = time.monotonic()
                logger.warning("dashboard figures could not be flushed", exc_info=True)


def _flusher_ensure() -> None:
    """Starts this process's flusher thread once (again in a forked child)."""
    global _flusher_pid
    pid = os.getpid()
    if _flusher_pid == pid:
        return
    with _flusher_lock:
        if _flusher_pid == pid:
            return
        threading.Thread(
            target=_flush_forever, args=(_local,), name="dashboard-flusher", daemon=True
        ).start()
        _flusher_pid = pid


def request_record(*, duration_ms: float, finished_at: float | None = None) -> None:
    """Counts one served request in this process (flushed within a second)."""
    _flusher_ensure()
    _local.request(duration_ms=duration_ms, second=int(finished_at or time.time()))


def telemetry_points_record(*, count: int) -> None:
    """Counts telemetry points stored by ingestion in this process."""
    if count <= 0:
        return
    _flusher_ensure()
    _local.telemetry_points(count=count, second=int(time.time()))


def local_flush(store: SecondStore | None = None) -> int:
    """Flushes this process's counts now (tests, and the publisher before it reads)."""
    return _local.flush(store or second_store())


# -- reading a window back -----------------------------------------------------------------


@dataclass(frozen=True)
class TrafficFigures:
    requests_per_second: float
    p95_ms: float | None
    telemetry_points_per_second: float


def traffic_figures(
    *, last_second: int, window_seconds: int, store: SecondStore | None = None
) -> TrafficFigures:
    """Rates and p95 over the ``window_seconds`` whole seconds ending with ``last_second``."""
    seconds = range(last_second - window_seconds + 1, last_second + 1)
    return figures_of((store or second_store()).read(seconds), window_seconds=window_seconds)


def figures_of(total: SecondCounts, *, window_seconds: int) -> TrafficFigures:
    """Rates and p95 of what was counted over ``window_seconds`` seconds."""
    return TrafficFigures(
        requests_per_second=sum(total.requests.values()) / window_seconds,
        p95_ms=percentile(total.requests, 0.95),
        telemetry_points_per_second=total.telemetry_points / window_seconds,
    )
