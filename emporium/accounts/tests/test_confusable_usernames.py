"""Spellings that reach one account share its login limit and cannot be registered twice.

PostgreSQL's ``UPPER`` maps the dotless i (U+0131) to ``I`` and the long s
(U+017F) to ``S``; Python's ``lower`` does not. When the lookup and the login
counter folded differently, "admin" spelt with a dotless i, or with some of
its letters full-width, each had a counter of its own while all of them tried
the same account's password.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.core.tests.factories import PASSWORD, UserFactory
from emporium.core.throttling import LoginAccountThrottle, LoginIPThrottle
from emporium.core.usernames import username_fold

pytestmark = pytest.mark.django_db

LOGIN_URL = "/api/auth/login/"
REGISTER_URL = "/api/auth/register/"
FROZEN_NOW = 1_900_000_000.0


@pytest.fixture(autouse=True)
def frozen_throttle_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    for throttle in (LoginIPThrottle, LoginAccountThrottle):
        monkeypatch.setattr(throttle, "timer", staticmethod(lambda: FROZEN_NOW))


def login(client: APIClient, username: str, password: str, address: str) -> Any:
    return client.post(
        LOGIN_URL, {"username": username, "password": password}, format="json", REMOTE_ADDR=address
    )


@pytest.mark.parametrize(
    ("account", "spellings"),
    [
        (
            "admin",
            ["adm\u0131n", "ADM\u0131N", "Adm\u0131n", "admin", "\uff41\uff44\uff4d\uff49\uff4e"],
        ),
        ("sysop", ["\u017fy\u017fop", "SY\u017fOP", "\u017fysop", "sy\u017fop", "SYSOP"]),
    ],
)
def test_confusable_spellings_share_one_counter_and_are_locked_out_together(
    api_client: APIClient, account: str, spellings: list[str]
) -> None:
    UserFactory(username=account)
    assert len(spellings) == LoginAccountThrottle().num_requests

    for attempt, spelling in enumerate(spellings):
        # each guess from its own address, so only the per-account limit can stop them
        response = login(api_client, spelling, "wrong-password", f"10.9.0.{attempt + 1}")
        assert response.status_code == 401, (spelling, response.content)

    for attempt, spelling in enumerate([account, *spellings]):
        response = login(api_client, spelling, PASSWORD, f"10.9.1.{attempt + 1}")
        assert response.status_code == 429, (spelling, response.content)
        assert response["Retry-After"] == "60"


def test_every_confusable_spelling_reaches_the_same_single_account(api_client: APIClient) -> None:
    user = UserFactory(username="admin")

    response = login(api_client, "adm\u0131n", PASSWORD, "10.9.2.1")

    assert response.status_code == 200, response.content
    assert User.objects.get_by_natural_key("ADM\u0131N") == user
    assert User.objects.get_by_natural_key("\uff41\uff44\uff4d\uff49\uff4e") == user


@pytest.mark.parametrize(
    ("existing", "newcomer"),
    [
        ("admin", "adm\u0131n"),
        ("admin", "ADMIN"),
        ("admin", "\uff41\uff44\uff4d\uff49\uff4e"),
        ("sysop", "\u017fy\u017fop"),
        ("strasse", "STRA\u00dfE"),
    ],
)
def test_registration_refuses_a_username_that_folds_onto_an_existing_one(
    api_client: APIClient, existing: str, newcomer: str
) -> None:
    UserFactory(username=existing)

    response = api_client.post(
        REGISTER_URL,
        {"username": newcomer, "email": "new@example.com", "password": "violet-anchor-meadow-42"},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "duplicate_account"
    assert response.json()["error"]["details"] == {
        "username": ["A user with that username already exists."]
    }
    assert list(User.objects.values_list("username", flat=True)) == [existing]


def test_registration_stores_the_compatibility_form(api_client: APIClient) -> None:
    response = api_client.post(
        REGISTER_URL,
        {
            "username": "\uff42\uff4f\uff42",
            "email": "bob@example.com",
            "password": "violet-anchor-meadow-42",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["username"] == "bob"
    assert User.objects.get().username_key == "bob"


def test_the_database_refuses_two_accounts_with_one_fold() -> None:
    from django.db import IntegrityError, transaction

    UserFactory(username="admin")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="adm\u0131n", email="other@example.com")

    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("spelling", "fold"),
    [
        ("  ADM\u0131N\t", "admin"),
        ("\u017fam", "sam"),
        ("STRA\u00dfE", "strasse"),
        ("x" * 200, "x" * 150),
    ],
)
def test_the_fold(spelling: str, fold: str) -> None:
    assert username_fold(spelling) == fold


def test_users_inserted_in_bulk_get_their_fold_too() -> None:
    """bulk_create skips save(): the key is the field's own, so it is kept there as well."""
    User.objects.bulk_create(
        [
            User(username=name, email=f"{index}@example.com")
            for index, name in enumerate(["Bulk1", "\u017ftar"])
        ]
    )

    assert dict(User.objects.values_list("username", "username_key")) == {
        "Bulk1": username_fold("Bulk1"),
        "\u017ftar": username_fold("\u017ftar"),
    }
    assert User.objects.get_by_natural_key("STAR").username == "\u017ftar"
