"""The versioned response cache: keys, invalidation, stampedes, failures and validators.

Each behaviour runs on the in-process cache and, when REDIS_URL is set, on the
real Redis through django-redis. Failures use a backend that raises and a
django-redis client pointed at a port nobody listens on.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.test import RequestFactory, override_settings
from django.utils.http import http_date

from config.settings.env import cache_config
from conftest import require_service
from emporium.core import cache as response_cache
from emporium.core.cache import (
    CachedBytes,
    CachePolicy,
    Outcome,
    conditional_response,
    namespace_bump,
    versioned_fetch,
)
from tests.support.processes import free_port

ALIAS = "response-cache-test"


class Renderer:
    """A compute function that counts its calls and can be held at a gate."""

    def __init__(self, body: bytes = b'{"n": 1}') -> None:
        self.body = body
        self.calls = 0
        self.started = threading.Event()
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:
            self.calls += 1
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(timeout=10)
        return self.body


@pytest.fixture(params=["locmem", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Configures ALIAS on the in-process cache or on the real Redis."""
    if request.param == "redis":
        url = require_service("REDIS_URL")
        config = cache_config(url, key_prefix="response-cache-test", ignore_exceptions=True)
    else:
        config = cache_config(None, key_prefix="response-cache-test", location="response-cache")
    with override_settings(CACHES={"default": caches.settings["default"], ALIAS: config}):
        caches[ALIAS].clear()
        response_cache.local_state_reset()
        yield request.param
        caches[ALIAS].clear()
    response_cache.local_state_reset()


def policy(**overrides: Any) -> CachePolicy:
    values: dict[str, Any] = {"alias": ALIAS, "wait_seconds": 2.0, "backoff_seconds": 0.0}
    values.update(overrides)
    return CachePolicy(**values)


def fetch(
    renderer: Callable[[], bytes],
    *,
    key: str = "page",
    namespaces: tuple[str, ...] = ("shop",),
    **overrides: Any,
) -> response_cache.Lookup:
    return versioned_fetch(
        key=key, namespaces=namespaces, compute=renderer, policy=policy(**overrides)
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Moves the cache's wall clock forward by some seconds."""
    offset = [0.0]
    real_now = response_cache._now

    def shifted() -> float:
        return real_now() + offset[0]

    monkeypatch.setattr(response_cache, "_now", shifted)

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance


# --- hits, keys and invalidation ----------------------------------------------------------


def test_the_first_read_computes_and_the_second_is_a_hit(backend: str) -> None:
    renderer = Renderer(b'{"price": "9.99"}')

    first = fetch(renderer)
    second = fetch(renderer)

    assert (first.outcome, second.outcome) == (Outcome.MISS, Outcome.HIT)
    assert renderer.calls == 1
    assert second.entry == first.entry
    assert first.entry.body == b'{"price": "9.99"}'
    assert first.entry.etag == '"' + hashlib.sha256(b'{"price": "9.99"}').hexdigest() + '"'


def test_keys_with_any_characters_are_stored_without_warnings(backend: str) -> None:
    renderer = Renderer()
    key = "list|http://testserver/api/products/|q=deep blue ünïcode " + "x" * 400

    fetch(renderer, key=key)
    fetch(renderer, key=key)

    assert renderer.calls == 1


def test_a_bump_makes_the_next_read_fresh_and_leaves_other_namespaces_alone(
    backend: str,
) -> None:
    product_one, product_two = Renderer(b"one v1"), Renderer(b"two")
    fetch(product_one, key="one", namespaces=("shop", "product.1"))
    fetch(product_two, key="two", namespaces=("shop", "product.2"))

    assert namespace_bump("product.1", alias=ALIAS) is True
    product_one.body = b"one v2"
    one = fetch(product_one, key="one", namespaces=("shop", "product.1"))
    two = fetch(product_two, key="two", namespaces=("shop", "product.2"))

    assert (one.outcome, one.entry.body) == (Outcome.MISS, b"one v2")
    assert (two.outcome, product_two.calls) == (Outcome.HIT, 1)


def test_bumping_a_shared_namespace_refreshes_every_entry_under_it(backend: str) -> None:
    one, two = Renderer(b"one"), Renderer(b"two")
    fetch(one, key="one", namespaces=("shop", "product.1"))
    fetch(two, key="two", namespaces=("shop", "product.2"))

    namespace_bump("shop", alias=ALIAS)
    fetch(one, key="one", namespaces=("shop", "product.1"))
    fetch(two, key="two", namespaces=("shop", "product.2"))

    assert (one.calls, two.calls) == (2, 2)


def test_a_lost_version_is_recreated_from_the_clock_so_old_entries_stay_unreachable(
    backend: str,
) -> None:
    renderer = Renderer(b"before")
    fetch(renderer)
    caches[ALIAS].delete(response_cache._version_key("shop"))  # evicted, or Redis restarted

    renderer.body = b"after"
    lookup = fetch(renderer)

    assert (lookup.outcome, lookup.entry.body) == (Outcome.MISS, b"after")


def test_a_failing_compute_propagates_caches_nothing_and_frees_the_lock(backend: str) -> None:
    def broken() -> bytes:
        raise LookupError("no such row")

    with pytest.raises(LookupError):
        fetch(broken)
    renderer = Renderer()
    # wait_seconds=0 would make a leftover lock visible as a second compute here
    lookup = fetch(renderer, wait_seconds=0.0)

    assert (lookup.outcome, renderer.calls) == (Outcome.MISS, 1)


# --- soft expiry and stampedes -------------------------------------------------------------


def test_a_soft_expired_entry_is_served_while_one_caller_refreshes_it(
    backend: str, clock: Callable[[float], None]
) -> None:
    renderer = Renderer(b"old")
    fetch(renderer)
    clock(61)  # past fresh_seconds, within stale_seconds
    renderer.body, renderer.gate = b"new", threading.Event()
    # The warm-up fetch already set "started"; re-arm it so the wait below really
    # waits for the refreshing thread to hold the lock (under load the main thread
    # could otherwise take the lock first and block on its own gate).
    renderer.started.clear()

    with ThreadPoolExecutor(max_workers=1) as pool:
        refreshing = pool.submit(fetch, renderer)
        assert renderer.started.wait(timeout=10)
        meanwhile = fetch(renderer)
        renderer.gate.set()
        refreshed = refreshing.result(timeout=10)

    assert (meanwhile.outcome, meanwhile.entry.body) == (Outcome.STALE, b"old")
    assert (refreshed.outcome, refreshed.entry.body) == (Outcome.MISS, b"new")
    assert renderer.calls == 2
    assert fetch(renderer).outcome == Outcome.HIT


def test_without_a_previous_value_others_wait_for_the_one_computing(backend: str) -> None:
    renderer = Renderer(b"cold")
    renderer.gate = threading.Event()

    with ThreadPoolExecutor(max_workers=1) as pool:
        computing = pool.submit(fetch, renderer)
        assert renderer.started.wait(timeout=10)
        threading.Timer(0.1, renderer.gate.set).start()
        waited = fetch(renderer)
        computing.result(timeout=10)

    assert (waited.outcome, waited.entry.body) == (Outcome.WAITED, b"cold")
    assert renderer.calls == 1


def test_waiting_is_bounded_then_the_caller_computes_itself(backend: str) -> None:
    renderer = Renderer(b"slow")
    renderer.gate = threading.Event()

    with ThreadPoolExecutor(max_workers=1) as pool:
        stuck = pool.submit(fetch, renderer)
        assert renderer.started.wait(timeout=10)
        gate = renderer.gate
        renderer.gate = None  # this caller's own compute is quick
        impatient = fetch(renderer, wait_seconds=0.1)
        gate.set()
        stuck.result(timeout=10)

    assert (impatient.outcome, impatient.entry.body) == (Outcome.MISS, b"slow")
    assert renderer.calls == 2


def _open_gate_once_computing(renderer: Renderer, *, after: float) -> None:
    """Lets the computation finish ``after`` seconds past its start.

    Timed from the start of the computation, not of the test: starting the
    stampede's threads can itself take longer than that on a loaded machine,
    and a thread arriving after the value was stored would see a plain hit.
    """
    assert renderer.gate is not None
    renderer.started.clear()  # a value computed earlier in the test started it once already

    def open_gate() -> None:
        renderer.started.wait(timeout=10)
        time.sleep(after)
        renderer.gate.set()  # type: ignore[union-attr]

    threading.Thread(target=open_gate, daemon=True).start()


def _stampede(renderer: Renderer, *, threads: int) -> list[response_cache.Lookup]:
    barrier = threading.Barrier(threads)

    def hit(_: int) -> response_cache.Lookup:
        barrier.wait(timeout=10)
        return fetch(renderer)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(hit, range(threads)))


def test_a_stampede_on_an_expired_hot_key_recomputes_it_once(
    backend: str, clock: Callable[[float], None]
) -> None:
    renderer = Renderer(b"hot")
    fetch(renderer)
    clock(61)
    renderer.calls = 0
    renderer.gate = threading.Event()
    _open_gate_once_computing(renderer, after=0.3)

    lookups = _stampede(renderer, threads=16)

    assert renderer.calls == 1
    assert sorted(lookup.outcome for lookup in lookups).count(Outcome.MISS) == 1
    assert {lookup.outcome for lookup in lookups} == {Outcome.MISS, Outcome.STALE}
    assert {lookup.entry.body for lookup in lookups} == {b"hot"}


def test_a_stampede_on_a_cold_key_computes_it_once(backend: str) -> None:
    renderer = Renderer(b"cold")
    renderer.gate = threading.Event()
    _open_gate_once_computing(renderer, after=0.2)

    lookups = _stampede(renderer, threads=16)

    assert renderer.calls == 1
    assert {lookup.outcome for lookup in lookups} == {Outcome.MISS, Outcome.WAITED}
    assert {lookup.entry.body for lookup in lookups} == {b"cold"}


# --- a failing cache -----------------------------------------------------------------------


class BrokenCache(LocMemCache):
    """An in-process cache that raises on every call while ``broken`` is set."""

    broken = False
    calls = 0

    def _touch(self) -> None:
        type(self).calls += 1
        if type(self).broken:
            raise ConnectionError("cache server gone")

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self._touch()
        return super().get(*args, **kwargs)

    def get_many(self, *args: Any, **kwargs: Any) -> Any:
        self._touch()
        return super().get_many(*args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        self._touch()
        return super().set(*args, **kwargs)

    def add(self, *args: Any, **kwargs: Any) -> Any:
        self._touch()
        return super().add(*args, **kwargs)

    def incr(self, *args: Any, **kwargs: Any) -> Any:
        self._touch()
        return super().incr(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        self._touch()
        return super().delete(*args, **kwargs)


@pytest.fixture
def broken_cache() -> Iterator[type[BrokenCache]]:
    config = {
        "BACKEND": f"{__name__}.BrokenCache",
        "LOCATION": "broken-cache",
        "KEY_PREFIX": "response-cache-test",
    }
    BrokenCache.broken, BrokenCache.calls = False, 0
    with override_settings(CACHES={"default": caches.settings["default"], ALIAS: config}):
        caches[ALIAS].clear()
        response_cache.local_state_reset()
        yield BrokenCache
        BrokenCache.broken = False
        caches[ALIAS].clear()
    response_cache.local_state_reset()


def test_a_raising_cache_is_a_miss_and_is_skipped_while_backing_off(
    broken_cache: type[BrokenCache],
) -> None:
    broken_cache.broken = True
    renderer = Renderer(b"from the database")

    first = fetch(renderer, backoff_seconds=60)
    calls_after_first = broken_cache.calls
    second = fetch(renderer, backoff_seconds=60)

    assert (first.outcome, second.outcome) == (Outcome.BYPASS, Outcome.BYPASS)
    assert first.entry.body == b"from the database"
    assert renderer.calls == 2
    assert broken_cache.calls == calls_after_first  # the backoff kept it away from the cache


def test_a_bump_lost_to_a_failing_cache_is_retried_before_the_next_read(
    broken_cache: type[BrokenCache],
) -> None:
    renderer = Renderer(b"before the write")
    fetch(renderer)
    broken_cache.broken = True

    assert namespace_bump("shop", alias=ALIAS, backoff_seconds=0) is False
    broken_cache.broken = False  # the server is back, with the old entry still in it
    renderer.body = b"after the write"
    lookup = fetch(renderer)

    assert (lookup.outcome, lookup.entry.body) == (Outcome.MISS, b"after the write")
    assert fetch(renderer).outcome == Outcome.HIT


@pytest.mark.parametrize("ignore_exceptions", [True, False])
def test_an_unreachable_redis_is_a_miss_with_or_without_ignore_exceptions(
    ignore_exceptions: bool,
) -> None:
    nobody_listens = f"redis://127.0.0.1:{free_port()}/0"
    config = cache_config(
        nobody_listens, key_prefix="response-cache-test", ignore_exceptions=ignore_exceptions
    )
    renderer = Renderer(b"from the database")
    with override_settings(CACHES={"default": caches.settings["default"], ALIAS: config}):
        response_cache.local_state_reset()
        lookup = fetch(renderer)
        bumped = namespace_bump("shop", alias=ALIAS)
    response_cache.local_state_reset()

    assert (lookup.outcome, lookup.entry.body) == (Outcome.BYPASS, b"from the database")
    assert bumped is False


# --- validators and conditional responses --------------------------------------------------


def test_last_modified_stays_while_the_body_stays_the_same(
    backend: str, clock: Callable[[float], None]
) -> None:
    renderer = Renderer(b"same")
    first = fetch(renderer)
    namespace_bump("shop", alias=ALIAS)
    clock(10)
    again = fetch(renderer)

    assert renderer.calls == 2
    assert again.entry.last_modified == first.entry.last_modified
    assert again.entry.last_modified_ambiguous is False


def test_a_new_body_gets_a_new_last_modified(backend: str, clock: Callable[[float], None]) -> None:
    renderer = Renderer(b"first")
    first = fetch(renderer)
    namespace_bump("shop", alias=ALIAS)
    clock(10)
    renderer.body = b"second"
    second = fetch(renderer)

    assert second.entry.last_modified >= first.entry.last_modified + 10
    assert second.entry.last_modified_ambiguous is False


def test_two_bodies_in_one_second_make_last_modified_ambiguous(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(response_cache, "_now", lambda: 1_700_000_000.25)
    renderer = Renderer(b"first")
    fetch(renderer)
    namespace_bump("shop", alias=ALIAS)
    monkeypatch.setattr(response_cache, "_now", lambda: 1_700_000_000.75)
    renderer.body = b"second"

    second = fetch(renderer)

    assert second.entry.last_modified == 1_700_000_000
    assert second.entry.last_modified_ambiguous is True


ENTRY = CachedBytes(
    body=b'{"id": 1}',
    etag='"abc"',
    last_modified=1_700_000_000,
    fresh_until=0.0,
)


def _respond(entry: CachedBytes = ENTRY, method: str = "get", **headers: str) -> Any:
    request = getattr(RequestFactory(), method)("/thing/", **headers)
    return conditional_response(
        request, entry, content_type="application/json", cache_control="public, max-age=5"
    )


@pytest.mark.parametrize("if_none_match", ['"abc"', 'W/"abc"', '"zzz", "abc"', "*", ' "abc" '])
def test_a_matching_if_none_match_is_304_with_the_validators(if_none_match: str) -> None:
    response = _respond(HTTP_IF_NONE_MATCH=if_none_match)

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == '"abc"'
    assert response["Last-Modified"] == http_date(1_700_000_000)
    assert response["Cache-Control"] == "public, max-age=5"


@pytest.mark.parametrize("if_none_match", ['"abd"', '"ab"', "", "garbage"])
def test_a_different_if_none_match_is_200_with_the_body(if_none_match: str) -> None:
    response = _respond(HTTP_IF_NONE_MATCH=if_none_match)

    assert response.status_code == 200
    assert response.content == b'{"id": 1}'
    assert response["Content-Type"] == "application/json"
    assert response["ETag"] == '"abc"'


def test_if_modified_since_at_or_after_last_modified_is_304() -> None:
    at = _respond(HTTP_IF_MODIFIED_SINCE=http_date(1_700_000_000))
    after = _respond(HTTP_IF_MODIFIED_SINCE=http_date(1_700_000_100))
    before = _respond(HTTP_IF_MODIFIED_SINCE=http_date(1_699_999_999))
    garbage = _respond(HTTP_IF_MODIFIED_SINCE="yesterday")

    assert (at.status_code, after.status_code) == (304, 304)
    assert (before.status_code, garbage.status_code) == (200, 200)


def test_if_none_match_wins_over_if_modified_since() -> None:
    response = _respond(
        HTTP_IF_NONE_MATCH='"other"', HTTP_IF_MODIFIED_SINCE=http_date(1_700_000_100)
    )

    assert response.status_code == 200


def test_an_ambiguous_last_modified_never_answers_304() -> None:
    ambiguous = CachedBytes(
        body=b"{}",
        etag='"e"',
        last_modified=1_700_000_000,
        fresh_until=0.0,
        last_modified_ambiguous=True,
    )

    response = _respond(ambiguous, HTTP_IF_MODIFIED_SINCE=http_date(1_700_000_100))

    assert response.status_code == 200


def test_head_is_conditional_too_but_other_methods_are_not() -> None:
    head = _respond(method="head", HTTP_IF_NONE_MATCH='"abc"')
    post = _respond(method="post", HTTP_IF_NONE_MATCH='"abc"')

    assert (head.status_code, post.status_code) == (304, 200)


# --- lagging namespaces -------------------------------------------------------------------

LAG_SECONDS = 10.0


def lagged(renderer: Callable[[], bytes], key: str, **overrides: Any) -> response_cache.Lookup:
    values: dict[str, Any] = {"lag_seconds": LAG_SECONDS, **overrides}
    return versioned_fetch(
        key=key,
        namespaces=("shop",),
        compute=renderer,
        policy=policy(**values),
        lagging=("words",),
    )


def moment(key: str) -> float:
    """Seconds after a lagging bump at which the entry of ``key`` is refreshed."""
    return response_cache._lag_fraction(response_cache._digest(key)) * LAG_SECONDS


def key_in_mid_window() -> str:
    """A key whose moment is 3 to 7 seconds into the window, so both sides can be seen."""
    return next(f"words|{n}" for n in range(1000) if 3 <= moment(f"words|{n}") <= 7)


def test_lag_moments_spread_evenly_over_the_window() -> None:
    tenths = [0] * 10
    for n in range(10_000):
        tenths[int(moment(f"suggest|{n}"))] += 1
    assert all(850 <= count <= 1150 for count in tenths), tenths


def test_after_a_lagging_bump_an_entry_is_used_until_its_moment_then_refreshed(
    backend: str, clock: Callable[[float], None]
) -> None:
    key = key_in_mid_window()
    renderer = Renderer(b"old")
    assert lagged(renderer, key).outcome == Outcome.MISS
    assert lagged(renderer, key).outcome == Outcome.HIT

    assert namespace_bump("words", alias=ALIAS) is True
    renderer.body = b"new"
    right_after = lagged(renderer, key)
    clock(moment(key) - 1)
    just_before = lagged(renderer, key)
    clock(1.1)
    at_its_moment = lagged(renderer, key)

    assert (right_after.outcome, right_after.entry.body) == (Outcome.LAGGING, b"old")
    assert (just_before.outcome, just_before.entry.body) == (Outcome.LAGGING, b"old")
    assert (at_its_moment.outcome, at_its_moment.entry.body) == (Outcome.MISS, b"new")
    assert lagged(renderer, key).outcome == Outcome.HIT
    assert renderer.calls == 2


def test_one_lagging_bump_refreshes_its_entries_spread_over_the_window(
    backend: str, clock: Callable[[float], None]
) -> None:
    keys = [f"words|{n}" for n in range(200)]
    renderers = {key: Renderer(b"old") for key in keys}
    for key in keys:
        lagged(renderers[key], key)
    namespace_bump("words", alias=ALIAS)
    for renderer in renderers.values():
        renderer.body = b"new"

    refreshed_per_second = []
    for _ in range(int(LAG_SECONDS) + 1):
        outcomes = [lagged(renderers[key], key).outcome for key in keys]
        refreshed_per_second.append(outcomes.count(Outcome.MISS))
        clock(1.0)

    # About a tenth of the entries each second, none left after the window,
    # each computed once more.
    assert all(refreshed <= 40 for refreshed in refreshed_per_second), refreshed_per_second
    assert sum(refreshed_per_second) == len(keys)
    assert all(renderer.calls == 2 for renderer in renderers.values())
    assert all(lagged(renderers[key], key).entry.body == b"new" for key in keys)


def test_an_exact_namespace_still_invalidates_at_once_beside_a_lagging_one(
    backend: str,
) -> None:
    key = key_in_mid_window()
    renderer = Renderer(b"old")
    lagged(renderer, key)
    namespace_bump("shop", alias=ALIAS)
    renderer.body = b"new"
    after = lagged(renderer, key)
    assert (after.outcome, after.entry.body) == (Outcome.MISS, b"new")


def test_without_a_lag_a_lagging_bump_is_followed_at_once(backend: str) -> None:
    key = key_in_mid_window()
    renderer = Renderer(b"old")
    lagged(renderer, key, lag_seconds=0.0)
    namespace_bump("words", alias=ALIAS)
    renderer.body = b"new"
    after = lagged(renderer, key, lag_seconds=0.0)
    assert (after.outcome, after.entry.body) == (Outcome.MISS, b"new")


def test_past_its_moment_an_outdated_entry_is_served_while_one_caller_refreshes_it(
    backend: str, clock: Callable[[float], None]
) -> None:
    key = key_in_mid_window()
    renderer = Renderer(b"old")
    lagged(renderer, key)
    namespace_bump("words", alias=ALIAS)
    lagged(renderer, key)  # the bump first read here
    clock(LAG_SECONDS)
    renderer.body, renderer.gate = b"new", threading.Event()
    renderer.started.clear()

    with ThreadPoolExecutor(max_workers=1) as pool:
        refreshing = pool.submit(lagged, renderer, key)
        assert renderer.started.wait(timeout=10)
        meanwhile = lagged(renderer, key)
        renderer.gate.set()
        refreshed = refreshing.result(timeout=10)

    assert (meanwhile.outcome, meanwhile.entry.body) == (Outcome.STALE, b"old")
    assert (refreshed.outcome, refreshed.entry.body) == (Outcome.MISS, b"new")
    assert renderer.calls == 2
