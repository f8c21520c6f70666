"""Refresh tokens are exchanged exactly once; a token used twice ends its whole sign-in."""

from __future__ import annotations

import threading
from typing import Any

import jwt
import pytest
from django.db import connection
from rest_framework.test import APIClient

from emporium.accounts.models import TokenFamily
from emporium.core.tests.factories import PASSWORD, UserFactory

LOGIN_URL = "/api/auth/login/"
REFRESH_URL = "/api/auth/refresh/"
LOGOUT_URL = "/api/auth/logout/"
ME_URL = "/api/auth/me/"
RACERS = 10


def sign_in(username: str) -> dict[str, str]:
    response = APIClient().post(
        LOGIN_URL, {"username": username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def refresh(token: str) -> Any:
    return APIClient().post(REFRESH_URL, {"refresh": token}, format="json")


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.mark.django_db(transaction=True)
def test_parallel_refreshes_of_one_token_have_exactly_one_winner(database_url: str) -> None:
    UserFactory(username="alice")
    token = sign_in("alice")["refresh"]
    start = threading.Barrier(RACERS)
    results: list[Any] = []
    lock = threading.Lock()

    def race() -> None:
        try:
            start.wait()
            response = refresh(token)
            with lock:
                results.append(response)
        finally:
            connection.close()  # each thread has its own PostgreSQL connection

    threads = [threading.Thread(target=race) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    statuses = sorted(response.status_code for response in results)
    assert statuses == [200] + [401] * (RACERS - 1)
    (winner,) = [response.json() for response in results if response.status_code == 200]
    for response in results:
        if response.status_code == 401:
            assert response.json()["error"]["details"] == {"code": "token_not_valid"}
    # One login, one family: the race did not fork the session into several.
    assert TokenFamily.objects.count() == 1
    # The losers presented a token that had just been exchanged: that is reuse,
    # indistinguishable from a thief racing the owner, so the sign-in is ended.
    assert TokenFamily.objects.get().revoked_at is not None
    assert refresh(winner["refresh"]).status_code == 401


@pytest.mark.django_db
def test_reusing_a_rotated_token_revokes_every_token_of_its_sign_in() -> None:
    UserFactory(username="alice")
    first = sign_in("alice")
    second = refresh(first["refresh"]).json()
    third = refresh(second["refresh"]).json()
    assert claims(third["refresh"])["fam"] == claims(first["refresh"])["fam"]

    # someone replays the first token (stolen before it was rotated)
    replay = refresh(first["refresh"])

    assert replay.status_code == 401
    assert replay.json()["error"]["message"] == "Token is blacklisted"
    # the newest token of that login, held by the owner or the thief, is dead too
    assert refresh(third["refresh"]).status_code == 401
    assert refresh(second["refresh"]).status_code == 401
    assert TokenFamily.objects.get().revoked_at is not None


@pytest.mark.django_db
def test_reuse_revokes_one_sign_in_and_leaves_the_others_alone() -> None:
    UserFactory(username="alice")
    phone, laptop = sign_in("alice"), sign_in("alice")
    assert claims(phone["refresh"])["fam"] != claims(laptop["refresh"])["fam"]
    refresh(phone["refresh"])

    assert refresh(phone["refresh"]).status_code == 401

    assert refresh(laptop["refresh"]).status_code == 200


@pytest.mark.django_db
def test_sequential_rotation_keeps_working() -> None:
    UserFactory(username="alice")
    token = sign_in("alice")["refresh"]
    for _ in range(5):
        response = refresh(token)
        assert response.status_code == 200, response.content
        token = response.json()["refresh"]
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
        assert client.get(ME_URL).status_code == 200


@pytest.mark.django_db
def test_logout_ends_the_sign_in_for_every_token_of_it() -> None:
    UserFactory(username="alice")
    first = sign_in("alice")
    second = refresh(first["refresh"]).json()

    response = APIClient().post(LOGOUT_URL, {"refresh": second["refresh"]}, format="json")

    assert response.status_code == 204
    assert refresh(second["refresh"]).status_code == 401
    assert TokenFamily.objects.get().revoked_at is not None


@pytest.mark.django_db
def test_a_refresh_token_without_a_family_is_refused() -> None:
    from rest_framework_simplejwt.tokens import RefreshToken

    user = UserFactory(username="alice")
    orphan = str(RefreshToken.for_user(user))  # correctly signed, but from no sign-in

    response = refresh(orphan)

    assert response.status_code == 401
    assert response.json()["error"]["details"] == {"code": "token_not_valid"}
