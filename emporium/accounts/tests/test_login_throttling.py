"""Login is limited per account (whatever the address) and per address (whatever the account).

The limits are the configured ones (login_account 5/min, login_ip 30/min by
default); only the throttles' clock is frozen so that Retry-After is exact.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from emporium.core.tests.factories import PASSWORD, UserFactory
from emporium.core.throttling import LoginAccountThrottle, LoginIPThrottle, RegisterIPThrottle

pytestmark = pytest.mark.django_db

LOGIN_URL = "/api/auth/login/"
FROZEN_NOW = 1_900_000_000.0


@pytest.fixture(autouse=True)
def frozen_throttle_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    for throttle in (LoginIPThrottle, LoginAccountThrottle, RegisterIPThrottle):
        monkeypatch.setattr(throttle, "timer", staticmethod(lambda: FROZEN_NOW))


def login(client: APIClient, username: str, password: str, address: str) -> Any:
    return client.post(
        LOGIN_URL,
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
    )


def assert_throttled(response: Any, wait: int) -> None:
    assert response.status_code == 429, response.content
    assert response["Retry-After"] == str(wait)
    assert response.json() == {
        "error": {
            "code": "throttled",
            "message": f"Request was throttled. Expected available in {wait} seconds.",
            "details": {},
        }
    }


def test_throttles_use_the_configured_rates() -> None:
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]

    assert LoginAccountThrottle().rate == rates["login_account"]
    assert LoginIPThrottle().rate == rates["login_ip"]
    assert RegisterIPThrottle().rate == rates["register_ip"]
    # the suite runs with the defaults; the loops below depend on them being small
    assert LoginAccountThrottle().num_requests == 5
    assert LoginIPThrottle().num_requests == 30


def test_one_account_is_throttled_across_addresses(api_client: APIClient) -> None:
    UserFactory(username="alice")
    limit = LoginAccountThrottle().num_requests

    for attempt in range(limit):
        response = login(api_client, "alice", "wrong-password", f"10.0.0.{attempt + 1}")
        assert response.status_code == 401

    # even the right password from a fresh address is refused now
    response = login(api_client, "alice", PASSWORD, "10.0.1.1")

    assert_throttled(response, 60)
    assert OutstandingToken.objects.count() == 0


def test_the_account_key_ignores_case_and_surrounding_spaces(api_client: APIClient) -> None:
    UserFactory(username="alice")
    spellings = ["alice", "Alice", "ALICE", " alice ", "aLiCe"]

    for attempt, spelling in enumerate(spellings):
        response = login(api_client, spelling, "wrong-password", f"10.0.0.{attempt + 1}")
        assert response.status_code == 401

    assert_throttled(login(api_client, "alice", PASSWORD, "10.0.2.1"), 60)


def test_throttling_one_account_leaves_other_accounts_alone(api_client: APIClient) -> None:
    UserFactory(username="alice")
    UserFactory(username="bob")
    for attempt in range(LoginAccountThrottle().num_requests):
        login(api_client, "alice", "wrong-password", f"10.0.0.{attempt + 1}")
    assert login(api_client, "alice", PASSWORD, "10.0.0.99").status_code == 429

    response = login(api_client, "bob", PASSWORD, "10.0.0.99")

    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


def test_successful_logins_count_towards_the_account_limit(api_client: APIClient) -> None:
    UserFactory(username="alice")
    for attempt in range(LoginAccountThrottle().num_requests):
        assert login(api_client, "alice", PASSWORD, f"10.0.0.{attempt + 1}").status_code == 200

    assert_throttled(login(api_client, "alice", PASSWORD, "10.0.0.50"), 60)


def test_one_address_is_throttled_across_accounts(api_client: APIClient) -> None:
    UserFactory(username="victim")
    limit = LoginIPThrottle().num_requests

    for attempt in range(limit):
        response = login(api_client, f"guess{attempt}", "wrong-password", "192.0.2.7")
        assert response.status_code == 401

    response = login(api_client, "victim", PASSWORD, "192.0.2.7")

    assert_throttled(response, 60)
    assert OutstandingToken.objects.count() == 0
    # another address is still served
    assert login(api_client, "victim", PASSWORD, "192.0.2.8").status_code == 200


def test_a_forged_forwarded_for_header_does_not_dodge_the_address_limit(
    api_client: APIClient,
) -> None:
    UserFactory(username="victim")
    for attempt in range(LoginIPThrottle().num_requests):
        response = api_client.post(
            LOGIN_URL,
            {"username": f"guess{attempt}", "password": "wrong-password"},
            format="json",
            REMOTE_ADDR="192.0.2.7",
            HTTP_X_FORWARDED_FOR=f"10.9.{attempt}.1",
        )
        assert response.status_code == 401

    response = api_client.post(
        LOGIN_URL,
        {"username": "victim", "password": PASSWORD},
        format="json",
        REMOTE_ADDR="192.0.2.7",
        HTTP_X_FORWARDED_FOR="10.99.99.99",
    )

    assert_throttled(response, 60)


def test_the_limit_resets_when_the_window_has_passed(
    api_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    UserFactory(username="alice")
    for attempt in range(LoginAccountThrottle().num_requests):
        login(api_client, "alice", "wrong-password", f"10.0.0.{attempt + 1}")
    assert login(api_client, "alice", PASSWORD, "10.0.0.9").status_code == 429

    later = FROZEN_NOW + 61
    for throttle in (LoginIPThrottle, LoginAccountThrottle):
        monkeypatch.setattr(throttle, "timer", staticmethod(lambda: later))

    assert login(api_client, "alice", PASSWORD, "10.0.0.9").status_code == 200


def test_retry_after_counts_down_with_the_clock(
    api_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    UserFactory(username="alice")
    for attempt in range(LoginAccountThrottle().num_requests):
        login(api_client, "alice", "wrong-password", f"10.0.0.{attempt + 1}")

    later = FROZEN_NOW + 45.5
    for throttle in (LoginIPThrottle, LoginAccountThrottle):
        monkeypatch.setattr(throttle, "timer", staticmethod(lambda: later))

    assert_throttled(login(api_client, "alice", PASSWORD, "10.0.0.9"), 15)


def test_registration_is_throttled_per_address(api_client: APIClient) -> None:
    limit = RegisterIPThrottle().num_requests
    for _ in range(limit):
        response = api_client.post("/api/auth/register/", {}, format="json", REMOTE_ADDR="1.2.3.4")
        assert response.status_code == 400

    response = api_client.post("/api/auth/register/", {}, format="json", REMOTE_ADDR="1.2.3.4")

    assert_throttled(response, 3600)
    assert (
        api_client.post("/api/auth/register/", {}, format="json", REMOTE_ADDR="1.2.3.5").status_code
        == 400
    )


def test_sign_in_works_while_the_throttle_store_is_down(
    api_client: APIClient, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A real Redis address nothing listens on: the counters cannot be kept, sign-in still works."""
    import socket

    from django.test import override_settings

    UserFactory(username="alice")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{port}/0"}

    with override_settings(CACHES={**settings.CACHES, "default": dead}):
        response = login(api_client, "alice", PASSWORD, "10.0.0.1")

    assert response.status_code == 200, response.content
    assert "access" in response.json()
    assert "throttle unavailable; allowing" in caplog.text
