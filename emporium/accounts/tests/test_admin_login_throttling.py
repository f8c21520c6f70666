"""The admin site's sign-in form is under the API login's limits, on the same counters."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from emporium.core.tests.factories import PASSWORD, StaffFactory, UserFactory
from emporium.core.throttling import LOGIN_THROTTLES, LoginAccountThrottle, LoginIPThrottle

pytestmark = pytest.mark.django_db

ADMIN_LOGIN_URL = "/admin/login/"
API_LOGIN_URL = "/api/auth/login/"
FROZEN_NOW = 1_900_000_000.0


@pytest.fixture(autouse=True)
def frozen_throttle_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    for throttle in LOGIN_THROTTLES:
        monkeypatch.setattr(throttle, "timer", staticmethod(lambda: FROZEN_NOW))


def admin_login(client: Client, username: str, password: str, address: str) -> Any:
    return client.post(
        ADMIN_LOGIN_URL,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def test_hammering_one_account_on_the_admin_form_is_throttled() -> None:
    StaffFactory(username="boss")
    client = Client()
    limit = LoginAccountThrottle().num_requests  # type: ignore[attr-defined]

    statuses = [
        admin_login(client, "boss", f"guess-{attempt}", f"10.7.0.{attempt + 1}").status_code
        for attempt in range(30)
    ]

    # Django answers a wrong password with the form again (200); then the limit
    assert statuses == [200] * limit + [429] * (30 - limit)
    refused = admin_login(client, "boss", PASSWORD, "10.7.1.1")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    assert b"Too many sign-in attempts" in refused.content
    assert "_auth_user_id" not in client.session


def test_the_admin_form_and_the_api_share_the_account_counter() -> None:
    StaffFactory(username="boss")
    client = Client()
    limit = LoginAccountThrottle().num_requests  # type: ignore[attr-defined]
    for attempt in range(limit):
        assert admin_login(client, "BOSS", "wrong", f"10.7.2.{attempt + 1}").status_code == 200

    response = client.post(
        API_LOGIN_URL,
        {"username": "boss", "password": PASSWORD},
        content_type="application/json",
        REMOTE_ADDR="10.7.3.1",
    )

    assert response.status_code == 429
    assert response["Retry-After"] == "60"


def test_one_address_is_throttled_on_the_admin_form_across_accounts() -> None:
    client = Client()
    limit = LoginIPThrottle().num_requests  # type: ignore[attr-defined]
    for attempt in range(limit):
        response = admin_login(client, f"nobody{attempt}", "wrong", "198.51.100.7")
        assert response.status_code == 200

    refused = admin_login(client, "someone-else", "wrong", "198.51.100.7")

    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"


def test_the_right_password_within_the_limit_signs_in_and_the_form_itself_is_not_counted() -> None:
    StaffFactory(username="boss")
    UserFactory(username="customer")
    client = Client()
    for _ in range(10):
        assert client.get(ADMIN_LOGIN_URL, REMOTE_ADDR="10.7.4.1").status_code == 200

    response = admin_login(client, "boss", PASSWORD, "10.7.4.1")

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
