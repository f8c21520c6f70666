"""The authentication state kept in memory refuses what it must, within its stated bound.

Signed-in requests read the account's state (active flag, permissions) from the
process or Redis (``emporium.accounts.access``) and remember verified tokens
(``emporium.accounts.authentication``). These tests hold the refusals:

- an account deactivated or deleted through the services is refused by the
  next request of the same process, and by every other process at most
  ``AUTH_STATE_LOCAL_SECONDS`` later (another process is played by a state held
  in this one while the change is committed elsewhere);
- an expired access token is refused, including one remembered as verified;
- a token whose key was retired is refused although it was remembered;
- a refresh token that was logged out or already exchanged is refused;
- a role change is seen by the next request;
- with Redis unreachable, the state comes from PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.cache import caches
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from config.settings.jwt_keys import jwt_key_entry, jwt_keys_parse
from emporium.accounts import access, services, tokens
from emporium.accounts.models import User
from emporium.core.tests.factories import OrderFactory, StaffFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db

ME_URL = "/api/auth/me/"
CART_URL = "/api/cart/"
ORDERS_URL = "/api/orders/"


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _refused(response: Any, code: str | None = None) -> None:
    assert response.status_code == 401, response.content
    if code is not None:
        error = response.json()["error"]
        assert code in (error["code"], (error["details"] or {}).get("code")), response.content


def test_a_deactivated_account_is_refused_by_the_next_request(
    django_capture_on_commit_callbacks: Any,
) -> None:
    admin, customer = StaffFactory(is_superuser=True), UserFactory()
    client = client_for(customer)
    assert client.get(CART_URL).status_code == 200  # the state is now held

    with django_capture_on_commit_callbacks(execute=True):
        services.user_update_by_admin(actor=admin, user=customer, is_active=False)

    _refused(client.get(CART_URL), "user_inactive")
    _refused(client.get(ME_URL), "user_inactive")


def test_a_deleted_account_is_refused_by_the_next_request(
    django_capture_on_commit_callbacks: Any,
) -> None:
    customer = UserFactory()
    client = client_for(customer)
    assert client.get(ME_URL).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        services.user_delete(user=customer)

    _refused(client.get(ME_URL), "user_not_found")


def test_another_process_refuses_a_deactivated_account_within_the_local_bound(
    settings: Any,
) -> None:
    """A process holding the state keeps it at most AUTH_STATE_LOCAL_SECONDS after the change.

    The change is made as another process makes it: the row is updated and the
    shared copy replaced by a tombstone, while this process's copy stays.
    """
    settings.AUTH_STATE_LOCAL_SECONDS = 0.5
    customer = UserFactory()
    client = client_for(customer)
    assert client.get(CART_URL).status_code == 200
    held = access._local[customer.pk]

    User.objects.filter(pk=customer.pk).update(is_active=False)  # no signal: another process
    caches["default"].set(access._key(customer.pk), access.TOMBSTONE, access.TOMBSTONE_SECONDS)
    access._local[customer.pk] = held  # as that process would still hold it

    assert client.get(CART_URL).status_code == 200  # inside the bound: the held state
    time.sleep(0.6)
    _refused(client.get(CART_URL), "user_inactive")


def test_a_reader_never_puts_an_old_state_back_over_a_tombstone() -> None:
    customer = UserFactory()
    access.user_state_forget(customer.pk)  # a change committed: tombstone
    User.objects.filter(pk=customer.pk).update(is_active=False)

    state = access.user_state(customer.pk)

    assert state is not None
    assert state.is_active is False
    assert caches["default"].get(access._key(customer.pk)) == access.TOMBSTONE


def test_an_expired_access_token_is_refused_even_once_remembered() -> None:
    customer = UserFactory()
    token = RefreshToken.for_user(customer).access_token
    token.set_exp(lifetime=timedelta(seconds=1))
    client = _bearer(str(token))
    assert client.get(ME_URL).status_code == 200  # verified and remembered

    time.sleep(1.2)

    _refused(client.get(ME_URL), "token_not_valid")


def test_an_access_token_expired_when_first_seen_is_refused() -> None:
    customer = UserFactory()
    now = int(time.time())
    claims = {
        "token_type": "access",
        "exp": now - 1,
        "iat": now - 600,
        "jti": uuid.uuid4().hex,
        "user_id": customer.pk,
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
    }
    key = tokens.signing_keys()[0]
    expired = jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})

    _refused(_bearer(expired).get(ME_URL), "token_not_valid")


def test_a_remembered_token_of_a_retired_key_is_refused() -> None:
    customer = UserFactory()
    old, new = jwt_key_entry("old"), jwt_key_entry("new")
    with override_settings(JWT_SIGNING_KEYS=jwt_keys_parse(old)):
        client = _bearer(str(RefreshToken.for_user(customer).access_token))
        assert client.get(ME_URL).status_code == 200  # verified and remembered

    with override_settings(JWT_SIGNING_KEYS=jwt_keys_parse(new)):
        _refused(client.get(ME_URL), "token_not_valid")


def test_logged_out_and_exchanged_refresh_tokens_are_refused() -> None:
    customer = UserFactory()
    pair = services.token_pair_issue(user=customer)
    client = APIClient()
    exchanged = client.post("/api/auth/refresh/", {"refresh": pair.refresh}, format="json")
    assert exchanged.status_code == 200
    _refused(client.post("/api/auth/refresh/", {"refresh": pair.refresh}, format="json"))

    second = services.token_pair_issue(user=customer)
    assert (
        client.post("/api/auth/logout/", {"refresh": second.refresh}, format="json").status_code
        == 204
    )
    _refused(client.post("/api/auth/refresh/", {"refresh": second.refresh}, format="json"))


def test_a_role_change_is_seen_by_the_next_request(
    django_capture_on_commit_callbacks: Any,
) -> None:
    support, other = UserFactory(), UserFactory()
    OrderFactory(user=other)
    client = client_for(support)
    assert client.get(ORDERS_URL).json()["results"] == []  # only their own

    with django_capture_on_commit_callbacks(execute=True):
        support.groups.add(Group.objects.get(name="support"))

    assert len(client.get(ORDERS_URL).json()["results"]) == 1  # now every order

    with django_capture_on_commit_callbacks(execute=True):
        support.groups.clear()

    assert client.get(ORDERS_URL).json()["results"] == []


def test_with_the_cache_unreachable_the_state_comes_from_postgresql() -> None:
    customer = UserFactory()
    client = client_for(customer)
    unreachable = {
        **settings.CACHES,
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        },
    }
    with override_settings(CACHES=unreachable):  # Django's test signal rebuilds the caches
        state = access.user_state(customer.pk)

    assert state is not None
    assert state.id == customer.pk
    assert state.is_active
    assert client.get(ME_URL).status_code == 200
