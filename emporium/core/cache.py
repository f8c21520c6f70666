"""Cached response bytes with versioned keys, stampede protection and HTTP validators.

Nothing here knows about any domain; an app names its namespaces and keys.

Keys are versioned
    Every entry belongs to one or more *namespaces* (``"catalog"``,
    ``"catalog.product.42"``). Each namespace has a version number stored in
    the cache itself, and the entry's key carries the versions it was built
    under. Invalidating a namespace is one atomic increment of its version:
    every entry built under the old number becomes unreachable and ages out on
    its own TTL. Nothing is ever deleted by pattern and the cache is never
    cleared. A version that is missing (never set, evicted, or lost in a Redis
    restart) is created from the clock in nanoseconds, so a re-created version
    can never coincide with one that old entries were stored under.

Some namespaces may be lagged behind, spread over a window
    A caller may name *lagging* namespaces beside its exact ones: the entry's
    key carries only the exact namespaces' versions, and the entry records the
    lagging versions it was built under. After a lagging namespace is bumped,
    an entry built before stays in use until a moment of its own within
    ``lag_seconds`` of the bump (a fraction of the window taken from the
    key's digest), then it is stale and refreshed by one caller. Hundreds of
    entries invalidated by one bump are so recomputed over the window, not all
    in its first second. The moment of a bump is when this process first read
    the new version; the process keeps the last few versions it saw.

Entries are soft-expired and refreshed by one caller
    An entry keeps the rendered bytes, a strong ETag (the quoted SHA-256 of the
    bytes), a Last-Modified second and a soft expiry. It stays in the cache
    ``stale_seconds`` longer than it is fresh. When it is missing or past its
    soft expiry, the caller that wins ``cache.add`` on a short-lived lock key
    recomputes it; the others answer with the soft-expired entry if there is
    one, or poll for up to ``wait_seconds`` for the winner's result and then
    compute it themselves rather than wait any longer.

A failing cache is a miss, never an error
    Any exception from the backend, or the ``None`` that django-redis returns
    from ``add``/``set``/``incr`` when ``IGNORE_EXCEPTIONS`` hides a failure,
    makes the read compute from the source without caching. After a failure
    the alias is skipped for ``backoff_seconds`` so that a dead server costs
    one timeout, not one per request. A version bump that fails is remembered
    in this process and retried before the alias is used again, so an entry
    from before the outage is not served once the server comes back.
    Another process that never saw the failure can still serve such an entry
    until it soft-expires: ``fresh_seconds`` bounds that window.

Bumps must happen after the write commits (``transaction.on_commit``):
a reader that fetched the new version before the commit could otherwise
store the old rows under it.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.core.cache import BaseCache, caches
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.http import http_date, parse_etags, parse_http_date_safe

from emporium.observability.metrics import cache_read_record, metrics_enabled

logger = logging.getLogger(__name__)

_ENTRY_FORMAT = 2
# Versions of a lagging namespace remembered per process, with when each was first read.
_LAGGING_VERSIONS_KEPT = 32
# How long a Last-Modified record outlives the entries it describes.
_VALIDATORS_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class CachePolicy:
    """How one family of entries is cached; built from settings by the app using it."""

    alias: str = "default"
    fresh_seconds: float = 60.0
    stale_seconds: float = 30.0
    lock_seconds: float = 5.0
    wait_seconds: float = 0.5
    poll_seconds: float = 0.02
    backoff_seconds: float = 2.0
    # How long after a lagging namespace's bump an entry built before it may
    # still be used (each entry until its own moment in this window).
    lag_seconds: float = 0.0
    # False turns the cache off: every read computes from the source (benchmarks
    # of the uncached path set it; nothing in production needs to).
    enabled: bool = True


@dataclass(frozen=True)
class CachedBytes:
    """One rendered response body and the validators that describe it."""

    body: bytes
    etag: str
    last_modified: int
    fresh_until: float
    # True when an earlier, different body was given the same Last-Modified
    # second, so If-Modified-Since cannot tell them apart and must not be trusted.
    last_modified_ambiguous: bool = False
    # The versions of the lagging namespaces it was built under, in their order.
    lagging_versions: tuple[int, ...] = ()

    @property
    def is_fresh(self) -> bool:
        return _now() < self.fresh_until


class Outcome(enum.StrEnum):
    HIT = "hit"  # fresh entry
    STALE = "stale"  # soft-expired entry served while another caller refreshes it
    # Built before a lagging namespace's bump; its moment to be refreshed has not come.
    LAGGING = "lagging"
    WAITED = "waited"  # another caller computed it while this one polled
    MISS = "miss"  # computed here and stored
    BYPASS = "bypass"  # the cache failed (or is backing off): computed, not stored


@dataclass(frozen=True)
class Lookup:
    entry: CachedBytes
    outcome: Outcome


class _CacheFailed(Exception):
    """The backend raised, or django-redis reported a hidden failure."""


# -- process-local state: failure backoff and bumps that could not be written ----------

_state_lock = threading.Lock()
_unavailable_until: dict[str, float] = {}
_pending_bumps: dict[str, set[str]] = {}
# Per (alias, lagging namespace): the versions read, oldest first, each with
# the time (``_now``) this process first read it.
_lagging_seen: dict[tuple[str, str], list[tuple[int, float]]] = {}


def local_state_reset() -> None:
    """Forgets failure backoffs and pending bumps (for tests)."""
    with _state_lock:
        _unavailable_until.clear()
        _pending_bumps.clear()
        _lagging_seen.clear()


def _backing_off(alias: str) -> bool:
    with _state_lock:
        until = _unavailable_until.get(alias)
    return until is not None and time.monotonic() < until


def _mark_failed(alias: str, backoff_seconds: float, error: BaseException | None) -> None:
    with _state_lock:
        _unavailable_until[alias] = time.monotonic() + backoff_seconds
    logger.warning("cache %r unavailable, reading from the source: %s", alias, error or "failed")


def _lagging_versions_seen(alias: str, namespaces: Sequence[str], versions: Sequence[int]) -> None:
    """Notes when this process first read each lagging namespace's current version."""
    now = _now()
    with _state_lock:
        for namespace, version in zip(namespaces, versions, strict=True):
            seen = _lagging_seen.setdefault((alias, namespace), [])
            if not seen or seen[-1][0] != version:
                seen.append((version, now))
                del seen[:-_LAGGING_VERSIONS_KEPT]


def _superseded_at(alias: str, namespace: str, version: int) -> float | None:
    """When this process first read a version newer than ``version``; None if unknown."""
    with _state_lock:
        seen = _lagging_seen.get((alias, namespace), [])
        return next((first_read for newer, first_read in seen if newer > version), None)


def _lag_fraction(key_digest: str) -> float:
    """Where in the lag window an entry's moment falls: uniform over [0, 1) across keys."""
    return int(key_digest[:8], 16) / 16**8


def _lag_allows(
    alias: str,
    namespaces: Sequence[str],
    current: Sequence[int],
    entry: CachedBytes,
    key_digest: str,
    lag_seconds: float,
) -> bool:
    """Whether an entry built under older lagging versions may still be used now."""
    if len(entry.lagging_versions) != len(current):
        return False
    moment = _lag_fraction(key_digest) * lag_seconds
    now = _now()
    for namespace, built, version in zip(namespaces, entry.lagging_versions, current, strict=True):
        if built == version:
            continue
        superseded = _superseded_at(alias, namespace, built)
        if superseded is None or now >= superseded + moment:
            return False
    return True


def _remember_bumps(alias: str, namespaces: Iterable[str]) -> None:
    with _state_lock:
        _pending_bumps.setdefault(alias, set()).update(namespaces)


def _take_pending_bumps(alias: str) -> set[str]:
    with _state_lock:
        return _pending_bumps.pop(alias, set())


# -- namespace versions ---------------------------------------------------------------


def _version_key(namespace: str) -> str:
    return f"ns:{namespace}"


def _new_version() -> int:
    return time.time_ns()


def _now() -> float:
    """Wall-clock time, shared by every process; one place so tests can move it."""
    return time.time()


def _bump_one(cache: BaseCache, namespace: str) -> None:
    key = _version_key(namespace)
    try:
        result: Any = cache.incr(key)
    except ValueError:  # no version yet (or evicted): any new one invalidates
        result = cache.add(key, _new_version(), timeout=None)
        # False means another caller created it just now, which is as good.
    if result is None:
        raise _CacheFailed(f"bumping {namespace!r} failed")


def _bump_all(cache: BaseCache, namespaces: Sequence[str]) -> None:
    """Bumps every namespace, or raises; on Redis in one round trip.

    Per key: SET NX of a new version (the key was missing or evicted), then INCR,
    which is what ``_bump_one`` does in two steps on other backends. A checkout
    bumps the product list and each product bought, so this saves a round trip
    per product. A namespace bumped twice (after a failure part-way) only costs
    one more miss.
    """
    raw = getattr(getattr(cache, "client", None), "get_client", None)
    if raw is None:
        for namespace in namespaces:
            _bump_one(cache, namespace)
        return
    pipe = raw(write=True).pipeline(transaction=False)
    for namespace in namespaces:
        key = cache.make_key(_version_key(namespace))
        pipe.set(key, _new_version(), nx=True)
        pipe.incr(key)
    pipe.execute()


def namespace_bump(*namespaces: str, alias: str, backoff_seconds: float = 2.0) -> bool:
    """Invalidates every entry built under these namespaces; True if all bumps were written.

    A bump that cannot be written is kept and retried before this process next
    reads through ``alias``; until then that process reads from the source.
    """
    pending = _take_pending_bumps(alias)
    wanted = list(dict.fromkeys([*sorted(pending), *namespaces]))
    if _backing_off(alias):
        _remember_bumps(alias, wanted)
        return False
    try:
        _bump_all(caches[alias], wanted)
    except Exception as exc:  # any backend failure degrades the same way
        _remember_bumps(alias, wanted)
        _mark_failed(alias, backoff_seconds, exc)
        logger.warning("cache %r: could not invalidate %s; will retry", alias, wanted)
        return False
    return True


def _flush_pending_bumps(cache: BaseCache, alias: str) -> None:
    pending = _take_pending_bumps(alias)
    if not pending:
        return
    try:
        _bump_all(cache, sorted(pending))
    except Exception:
        _remember_bumps(alias, pending)
        raise


def _versions(cache: BaseCache, namespaces: Sequence[str]) -> list[int]:
    keys = [_version_key(namespace) for namespace in namespaces]
    found = cache.get_many(keys)
    versions: list[int] = []
    for key in keys:
        value = found.get(key)
        if not isinstance(value, int):
            created = _new_version()
            added = cache.add(key, created, timeout=None)
            if added is None:
                raise _CacheFailed("creating a namespace version failed")
            value = created if added else cache.get(key)
            if not isinstance(value, int):
                raise _CacheFailed("a namespace version could not be read back")
        versions.append(value)
    return versions


# -- entries --------------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def strong_etag(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()}"'


def _decode_entry(raw: Any) -> CachedBytes | None:
    if not isinstance(raw, tuple) or len(raw) != 7 or raw[0] != _ENTRY_FORMAT:
        return None  # absent, or written by an incompatible version of this module
    _, body, etag, last_modified, fresh_until, ambiguous, lagging_versions = raw
    return CachedBytes(
        body=body,
        etag=etag,
        last_modified=last_modified,
        fresh_until=fresh_until,
        last_modified_ambiguous=ambiguous,
        lagging_versions=tuple(lagging_versions),
    )


def _encode_entry(entry: CachedBytes) -> tuple[Any, ...]:
    return (
        _ENTRY_FORMAT,
        entry.body,
        entry.etag,
        entry.last_modified,
        entry.fresh_until,
        entry.last_modified_ambiguous,
        entry.lagging_versions,
    )


def _last_modified(
    cache: BaseCache | None, validators_key: str, etag: str, now: float
) -> tuple[int, bool]:
    """The Last-Modified second for a body, kept stable while the body stays the same.

    The record per key (not per version) remembers the last body's ETag and
    second. The same body keeps its second, so If-Modified-Since keeps working
    across refreshes; a different body gets the current second, and is marked
    ambiguous if the previous body had that second too.
    """
    second = int(now)
    if cache is None:
        return second, True  # nothing to compare with: never claim "not modified"
    previous = cache.get(validators_key)
    if isinstance(previous, tuple) and len(previous) == 3:
        previous_etag, previous_second, previous_ambiguous = previous
        if previous_etag == etag:
            return int(previous_second), bool(previous_ambiguous)
        if previous_second >= second:  # same second, or another server's clock is ahead
            second, ambiguous = int(previous_second), True
        else:
            ambiguous = False
    else:
        ambiguous = False
    cache.set(validators_key, (etag, second, ambiguous), timeout=_VALIDATORS_TTL_SECONDS)
    return second, ambiguous


def _build(
    compute: Callable[[], bytes],
    policy: CachePolicy,
    *,
    cache: BaseCache | None,
    validators_key: str,
    lagging_versions: tuple[int, ...] = (),
) -> CachedBytes:
    body = compute()
    etag = strong_etag(body)
    now = _now()
    try:
        last_modified, ambiguous = _last_modified(cache, validators_key, etag, now)
    except Exception:  # the validators are optional; the body is not
        last_modified, ambiguous = int(now), True
    return CachedBytes(
        body=body,
        etag=etag,
        last_modified=last_modified,
        fresh_until=now + policy.fresh_seconds,
        last_modified_ambiguous=ambiguous,
        lagging_versions=lagging_versions,
    )


def _store(cache: BaseCache, entry_key: str, entry: CachedBytes, policy: CachePolicy) -> None:
    # A lost write is only a later miss: set() reports nothing useful on LocMem
    # and None when django-redis hides an error, so its result is not checked.
    cache.set(entry_key, _encode_entry(entry), timeout=policy.fresh_seconds + policy.stale_seconds)


def _bypass(compute: Callable[[], bytes], policy: CachePolicy) -> Lookup:
    entry = _build(compute, policy, cache=None, validators_key="")
    return Lookup(entry=entry, outcome=Outcome.BYPASS)


# Outcomes answered with bytes the cache held: counted as hits, the rest as misses.
_FROM_CACHE = frozenset({Outcome.HIT, Outcome.LAGGING, Outcome.STALE, Outcome.WAITED})


def versioned_fetch(
    *,
    key: str,
    namespaces: Sequence[str],
    compute: Callable[[], bytes],
    policy: CachePolicy,
    lagging: Sequence[str] = (),
) -> Lookup:
    """The cached bytes for ``key`` under the current versions of ``namespaces``.

    ``compute`` renders the bytes from the source of truth. An exception it
    raises propagates unchanged and nothing is cached, so error responses are
    never stored. ``key`` may hold any characters; it is hashed. Every read of
    an enabled cache is counted in ``emporium_cache_requests_total`` by its
    narrowest namespace (a failing cache's reads as misses).

    ``lagging`` names namespaces whose bumps the entry may follow up to
    ``policy.lag_seconds`` late (see the module's docstring).
    """
    lookup = _fetch(key=key, namespaces=namespaces, compute=compute, policy=policy, lagging=lagging)
    if policy.enabled and metrics_enabled():  # a cache turned off is not asked
        cache_read_record([*namespaces, *lagging], hit=lookup.outcome in _FROM_CACHE)
    return lookup


def _fetch(
    *,
    key: str,
    namespaces: Sequence[str],
    compute: Callable[[], bytes],
    policy: CachePolicy,
    lagging: Sequence[str] = (),
) -> Lookup:
    alias = policy.alias
    if not policy.enabled or _backing_off(alias):
        return _bypass(compute, policy)
    cache = caches[alias]
    try:
        _flush_pending_bumps(cache, alias)
        all_versions = _versions(cache, [*namespaces, *lagging])
        versions = all_versions[: len(namespaces)]
        lagging_versions = tuple(all_versions[len(namespaces) :])
        key_digest = _digest(key)
        entry_key = f"entry:{key_digest}:{'.'.join(str(version) for version in versions)}"
        current = _decode_entry(cache.get(entry_key))
        if lagging:
            _lagging_versions_seen(alias, lagging, lagging_versions)
            if current is not None and current.lagging_versions != lagging_versions:
                if current.is_fresh and _lag_allows(
                    alias, lagging, lagging_versions, current, key_digest, policy.lag_seconds
                ):
                    return Lookup(entry=current, outcome=Outcome.LAGGING)
                # Outdated: served as stale while one caller refreshes it.
                current = replace(current, fresh_until=0.0)
        if current is not None and current.is_fresh:
            return Lookup(entry=current, outcome=Outcome.HIT)
        locked = cache.add(f"{entry_key}:lock", 1, timeout=policy.lock_seconds)
        if locked is None:
            raise _CacheFailed("taking the refresh lock failed")
    except Exception as error:  # a failing cache is a miss
        _mark_failed(alias, policy.backoff_seconds, error)
        return _bypass(compute, policy)

    validators_key = f"validators:{key_digest}"
    if locked:
        return _refresh(cache, entry_key, validators_key, compute, policy, lagging_versions)
    if current is not None:
        return Lookup(entry=current, outcome=Outcome.STALE)
    waited = _wait_for(cache, entry_key, policy, lagging_versions)
    if waited is not None:
        return Lookup(entry=waited, outcome=Outcome.WAITED)
    entry = _build_and_store(cache, entry_key, validators_key, compute, policy, lagging_versions)
    return Lookup(entry=entry, outcome=Outcome.MISS)


def _build_and_store(
    cache: BaseCache,
    entry_key: str,
    validators_key: str,
    compute: Callable[[], bytes],
    policy: CachePolicy,
    lagging_versions: tuple[int, ...],
) -> CachedBytes:
    entry = _build(
        compute,
        policy,
        cache=cache,
        validators_key=validators_key,
        lagging_versions=lagging_versions,
    )
    _store_quietly(cache, entry_key, entry, policy)
    return entry


def _refresh(
    cache: BaseCache,
    entry_key: str,
    validators_key: str,
    compute: Callable[[], bytes],
    policy: CachePolicy,
    lagging_versions: tuple[int, ...] = (),
) -> Lookup:
    started = time.monotonic()
    try:
        entry = _build_and_store(
            cache, entry_key, validators_key, compute, policy, lagging_versions
        )
    finally:
        # Past the lock's TTL another caller may hold a lock of its own by now.
        if time.monotonic() - started < policy.lock_seconds:
            with contextlib.suppress(Exception):  # the lock's TTL frees it anyway
                cache.delete(f"{entry_key}:lock")
    return Lookup(entry=entry, outcome=Outcome.MISS)


def _store_quietly(
    cache: BaseCache, entry_key: str, entry: CachedBytes, policy: CachePolicy
) -> None:
    try:
        _store(cache, entry_key, entry, policy)
    except Exception as error:  # the caller still has its bytes
        _mark_failed(policy.alias, policy.backoff_seconds, error)


def _wait_for(
    cache: BaseCache,
    entry_key: str,
    policy: CachePolicy,
    lagging_versions: tuple[int, ...] = (),
) -> CachedBytes | None:
    deadline = time.monotonic() + policy.wait_seconds
    while time.monotonic() < deadline:
        time.sleep(policy.poll_seconds)
        try:
            entry = _decode_entry(cache.get(entry_key))
        except Exception:  # stop waiting on a failing cache
            return None
        if entry is not None and entry.is_fresh and entry.lagging_versions == lagging_versions:
            return entry
    return None


# -- HTTP ------------------------------------------------------------------------------


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"."""
    if header.strip() == "*":
        return True
    return any(candidate.removeprefix("W/") == etag for candidate in parse_etags(header))


def not_modified(request: HttpRequest, entry: CachedBytes) -> bool:
    """Whether the client's copy is current (RFC 9110 §13.2.2: If-None-Match wins)."""
    if request.method not in ("GET", "HEAD"):
        return False
    if_none_match = request.META.get("HTTP_IF_NONE_MATCH")
    if if_none_match is not None:
        return _etag_matches(if_none_match, entry.etag)
    if_modified_since = request.META.get("HTTP_IF_MODIFIED_SINCE")
    if if_modified_since and not entry.last_modified_ambiguous:
        since = parse_http_date_safe(if_modified_since)
        return since is not None and entry.last_modified <= since
    return False


def conditional_response(
    request: HttpRequest, entry: CachedBytes, *, content_type: str, cache_control: str
) -> HttpResponse:
    """200 with the cached bytes, or 304 with no body when the client's copy is current."""
    response: HttpResponse
    if not_modified(request, entry):
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(entry.body, content_type=content_type)
    response["ETag"] = entry.etag
    response["Last-Modified"] = http_date(entry.last_modified)
    response["Cache-Control"] = cache_control
    return response
