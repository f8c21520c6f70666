"""Which requests each throttle counts, and under which key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from emporium.core.tests.factories import UserFactory, client_for
from emporium.core.throttling import (
    LoginAccountThrottle,
    LoginIPThrottle,
    RegisterIPThrottle,
    UserWriteThrottle,
    gcra_take,
)


def json_request(body: Any, method: str = "POST", address: str = "203.0.113.9") -> Request:
    raw = APIRequestFactory().generic(
        method, "/api/auth/login/", body, content_type="application/json", REMOTE_ADDR=address
    )
    return Request(raw, parsers=[JSONParser()])


@pytest.mark.parametrize(
    ("username", "key"),
    [
        ("alice", "throttle_login_account_alice"),
        ("Alice", "throttle_login_account_alice"),
        ("  ALICE\t", "throttle_login_account_alice"),
        ("x" * 200, "throttle_login_account_" + "x" * 150),
    ],
)
def test_the_account_key_is_the_normalised_username(username: str, key: str) -> None:
    request = json_request(json.dumps({"username": username}))

    assert LoginAccountThrottle().get_cache_key(request, APIView()) == key


@pytest.mark.parametrize(
    "body",
    ['{"password": "x"}', '{"username": ""}', '{"username": 42}', '{"username": null}', "[1, 2]"],
)
def test_without_a_username_string_the_account_throttle_does_not_count(body: str) -> None:
    assert LoginAccountThrottle().get_cache_key(json_request(body), APIView()) is None


def test_the_ip_key_is_the_remote_address() -> None:
    request = json_request("{}", address="198.51.100.4")

    assert LoginIPThrottle().get_cache_key(request, APIView()) == "throttle_login_ip_198.51.100.4"
    assert (
        RegisterIPThrottle().get_cache_key(request, APIView())
        == "throttle_register_ip_198.51.100.4"
    )


def test_without_trusted_proxies_a_forwarded_for_header_is_ignored() -> None:
    assert settings.TRUSTED_PROXY_COUNT == 0
    request = json_request("{}", address="198.51.100.4")
    request._request.META["HTTP_X_FORWARDED_FOR"] = "6.6.6.6"

    assert LoginIPThrottle().get_cache_key(request, APIView()) == "throttle_login_ip_198.51.100.4"


def test_behind_one_trusted_proxy_the_key_is_the_address_the_proxy_saw() -> None:
    request = json_request("{}", address="10.0.0.2")
    request._request.META["HTTP_X_FORWARDED_FOR"] = "6.6.6.6, 198.51.100.20"

    with override_settings(TRUSTED_PROXY_COUNT=1):
        key = LoginIPThrottle().get_cache_key(request, APIView())

    assert key == "throttle_login_ip_198.51.100.20"


def _as(user: Any, method: str) -> Request:
    request = Request(APIRequestFactory().generic(method, "/api/things/"))
    request.user = user
    return request


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_user_writes_are_counted_per_user(method: str) -> None:
    user = UserFactory.build(pk=41)

    assert UserWriteThrottle().get_cache_key(_as(user, method), APIView()) == (
        "throttle_user_writes_41"
    )


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_user_reads_are_not_counted(method: str) -> None:
    user = UserFactory.build(pk=41)

    assert UserWriteThrottle().get_cache_key(_as(user, method), APIView()) is None


def test_anonymous_writes_are_not_counted_by_the_user_throttle() -> None:
    assert UserWriteThrottle().get_cache_key(_as(AnonymousUser(), "POST"), APIView()) is None


@pytest.mark.django_db
def test_the_user_write_throttle_guards_every_api_view_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        UserWriteThrottle,
        "THROTTLE_RATES",
        {**UserWriteThrottle.THROTTLE_RATES, "user_writes": "2/min"},
    )
    user = UserFactory(first_name="Start")
    client = client_for(user)
    for name in ("One", "Two"):
        assert client.patch("/api/auth/me/", {"first_name": name}, format="json").status_code == 200

    response = client.patch("/api/auth/me/", {"first_name": "Three"}, format="json")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) in range(1, 61)
    user.refresh_from_db()
    assert user.first_name == "Two"
    # reads are never counted
    assert client.get("/api/auth/me/").status_code == 200
    # another user has an allowance of their own
    other = client_for(UserFactory())
    assert other.patch("/api/auth/me/", {"first_name": "X"}, format="json").status_code == 200


# -- the write throttle's GCRA, on whichever default cache the suite runs with ---------

NOW = 1_900_000_000.0


@pytest.mark.parametrize(("limit", "period"), [(2, 60.0), (5, 60.0), (3, 1.0)])
def test_gcra_allows_a_burst_of_the_limit_then_one_per_interval(limit: int, period: float) -> None:
    key = f"gcra-test-{limit}-{period}"
    interval = period / limit

    waits = [gcra_take(key, limit=limit, period=period, now=NOW) for _ in range(limit + 1)]

    assert waits[:limit] == [0.0] * limit
    assert waits[limit] == pytest.approx(interval, abs=1e-5)
    # not yet: a refused request does not move the schedule
    assert gcra_take(key, limit=limit, period=period, now=NOW + interval / 2) == pytest.approx(
        interval / 2, abs=1e-5
    )
    assert gcra_take(key, limit=limit, period=period, now=NOW + interval) == 0.0
    assert gcra_take(key, limit=limit, period=period, now=NOW + interval) > 0
    # after a whole idle period the full burst is back
    later = NOW + interval + period
    assert [gcra_take(key, limit=limit, period=period, now=later) for _ in range(limit)] == [
        0.0
    ] * limit


def test_gcra_keys_are_independent() -> None:
    assert gcra_take("gcra-a", limit=1, period=60, now=NOW) == 0.0
    assert gcra_take("gcra-a", limit=1, period=60, now=NOW) > 0
    assert gcra_take("gcra-b", limit=1, period=60, now=NOW) == 0.0


def test_gcra_on_redis_is_atomic_across_racing_threads(redis_url: str) -> None:
    """Forty threads, ten allowed: the script's read and write cannot interleave."""
    import threading

    barrier = threading.Barrier(40)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        barrier.wait()
        wait = gcra_take("gcra-race", limit=10, period=60, now=NOW)
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(waits).count(0.0) == 10
    assert len(waits) == 40


def test_gcra_keys_expire_when_the_schedule_catches_up(redis_url: str) -> None:
    from django.core.cache import cache

    gcra_take("gcra-ttl", limit=4, period=2.0, now=NOW)
    client = cache.client.get_client(write=True)  # type: ignore[attr-defined]

    assert 0 < client.pttl(cache.make_key("gcra-ttl")) <= 500  # one interval, in ms


@pytest.mark.django_db
def test_writes_are_allowed_when_the_throttle_store_is_down(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A real, unreachable Redis (nothing listens on the port): checkout is not blocked."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = {
        **settings.CACHES["default"],
        "LOCATION": f"redis://127.0.0.1:{port}/0",
    }
    user = UserFactory.build(pk=77)
    request = _as(user, "POST")
    with override_settings(CACHES={**settings.CACHES, "default": dead}):
        allowed = UserWriteThrottle().allow_request(request, APIView())

    assert allowed is True
    assert "write throttle unavailable" in caplog.text
