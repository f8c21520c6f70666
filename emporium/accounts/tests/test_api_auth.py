"""Contract tests of /api/auth/: register, login, refresh, logout and me."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.hashers import check_password
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from emporium.accounts.models import User
from emporium.core.tests.factories import PASSWORD, StaffFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db

REGISTER_URL = "/api/auth/register/"
LOGIN_URL = "/api/auth/login/"
REFRESH_URL = "/api/auth/refresh/"
LOGOUT_URL = "/api/auth/logout/"
ME_URL = "/api/auth/me/"

STRONG_PASSWORD = "violet-anchor-meadow-42"
USERNAME_TAKEN = "A user with that username already exists."
EMAIL_TAKEN = "A user with that e-mail address already exists."
TOO_SHORT = "This password is too short. It must contain at least 8 characters."


def assert_error(response: Any, status: int, code: str, message: str, details: Any = None) -> None:
    assert response.status_code == status, response.content
    assert response.json() == {
        "error": {"code": code, "message": message, "details": details if details else {}}
    }


def register(client: APIClient, **overrides: Any) -> Any:
    payload = {
        "username": "alice",
        "email": "alice@example.com",
        "password": STRONG_PASSWORD,
        "first_name": "Alice",
        "last_name": "Liddell",
        **overrides,
    }
    return client.post(REGISTER_URL, payload, format="json")


def login(client: APIClient, username: str, password: str = PASSWORD, **extra: Any) -> Any:
    return client.post(
        LOGIN_URL, {"username": username, "password": password}, format="json", **extra
    )


# --- register -------------------------------------------------------------------------


def test_register_creates_a_customer_and_returns_its_public_fields(api_client: APIClient) -> None:
    response = register(api_client)

    assert response.status_code == 201
    body = response.json()
    user = User.objects.get()
    assert set(body) == {
        "id",
        "username",
        "email",
        "first_name",
        "last_name",
        "is_staff",
        "created_at",
        "updated_at",
    }
    assert body["id"] == user.pk
    assert body["username"] == "alice"
    assert body["email"] == "alice@example.com"
    assert body["first_name"] == "Alice"
    assert body["last_name"] == "Liddell"
    assert body["is_staff"] is False
    assert parse_datetime(body["created_at"]) == user.created_at
    assert parse_datetime(body["updated_at"]) == user.updated_at
    assert (user.is_staff, user.is_superuser, user.is_active) == (False, False, True)


def test_register_never_returns_and_never_stores_the_plain_password(
    api_client: APIClient,
) -> None:
    response = register(api_client)

    assert response.status_code == 201
    assert "password" not in response.json()
    assert STRONG_PASSWORD not in response.content.decode()
    user = User.objects.get(username="alice")
    assert user.password != STRONG_PASSWORD
    assert user.password.startswith("md5$")  # the test settings' hasher; base uses Argon2
    assert check_password(STRONG_PASSWORD, user.password) is True
    assert user.check_password("something-else-entirely") is False


def test_register_lowercases_the_email_domain(api_client: APIClient) -> None:
    response = register(api_client, email="Alice.Liddell@EXAMPLE.COM")

    assert response.status_code == 201
    assert response.json()["email"] == "Alice.Liddell@example.com"
    assert User.objects.get().email == "Alice.Liddell@example.com"


def test_registered_user_can_log_in(api_client: APIClient) -> None:
    assert register(api_client).status_code == 201

    response = login(api_client, "alice", STRONG_PASSWORD)

    assert response.status_code == 200
    assert AccessToken(response.json()["access"])["user_id"] == str(User.objects.get().pk)


def test_register_requires_username_email_and_password(api_client: APIClient) -> None:
    response = api_client.post(REGISTER_URL, {}, format="json")

    assert_error(
        response,
        400,
        "validation_error",
        "The request contains invalid data.",
        {
            "username": ["This field is required."],
            "email": ["This field is required."],
            "password": ["This field is required."],
        },
    )
    assert User.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "details"),
    [
        ({"email": "not-an-e-mail"}, {"email": ["Enter a valid email address."]}),
        (
            {"username": "has space"},
            {"username": ["This value does not match the required pattern."]},
        ),
        (
            {"username": "u" * 151},
            {"username": ["Ensure this field has no more than 150 characters."]},
        ),
    ],
)
def test_register_rejects_malformed_fields(
    api_client: APIClient, overrides: dict[str, str], details: dict[str, list[str]]
) -> None:
    response = register(api_client, **overrides)

    assert_error(response, 400, "validation_error", "The request contains invalid data.", details)
    assert User.objects.count() == 0


@pytest.mark.parametrize("username", ["alice", "Alice", "ALICE"])
def test_register_rejects_a_taken_username_in_any_case(
    api_client: APIClient, username: str
) -> None:
    existing = UserFactory(username="alice", email="first@example.com")

    response = register(api_client, username=username, email="second@example.com")

    assert_error(
        response,
        400,
        "duplicate_account",
        "An account with these details already exists.",
        {"username": [USERNAME_TAKEN]},
    )
    assert list(User.objects.values_list("pk", flat=True)) == [existing.pk]


@pytest.mark.parametrize("email", ["a@x.com", "A@x.com", "a@X.COM", "A@X.com"])
def test_register_rejects_a_taken_email_in_any_case(api_client: APIClient, email: str) -> None:
    existing = UserFactory(username="first", email="a@x.com")

    response = register(api_client, username="second", email=email)

    assert_error(
        response,
        400,
        "duplicate_account",
        "An account with these details already exists.",
        {"email": [EMAIL_TAKEN]},
    )
    assert list(User.objects.values_list("pk", flat=True)) == [existing.pk]


def test_register_reports_both_duplicates_at_once(api_client: APIClient) -> None:
    UserFactory(username="Alice", email="ALICE@example.com")

    response = register(api_client, username="alice", email="alice@example.com")

    assert_error(
        response,
        400,
        "duplicate_account",
        "An account with these details already exists.",
        {"username": [USERNAME_TAKEN], "email": [EMAIL_TAKEN]},
    )
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("username", "password", "messages"),
    [
        ("alice", "Ab1-xyz", [TOO_SHORT]),
        ("alice", "password", ["This password is too common."]),
        ("alice", "qwerty123", ["This password is too common."]),
        ("alice", "8472910365", ["This password is entirely numeric."]),
        ("marigold", "marigold7x", ["The password is too similar to the username."]),
        (
            "alice",
            "1234567",
            [TOO_SHORT, "This password is too common.", "This password is entirely numeric."],
        ),
    ],
)
def test_register_rejects_weak_passwords_and_creates_nothing(
    api_client: APIClient, username: str, password: str, messages: list[str]
) -> None:
    response = register(
        api_client, username=username, email="someone@example.com", password=password
    )

    assert_error(
        response,
        400,
        "validation_error",
        "The password does not meet the rules.",
        {"password": messages},
    )
    assert User.objects.count() == 0


def test_register_rejects_a_password_similar_to_the_email(api_client: APIClient) -> None:
    response = register(
        api_client, username="bob", email="marmalade.sky@example.com", password="marmalade.sky"
    )

    assert_error(
        response,
        400,
        "validation_error",
        "The password does not meet the rules.",
        {"password": ["The password is too similar to the email address."]},
    )
    assert User.objects.count() == 0


def test_register_ignores_privilege_fields(api_client: APIClient) -> None:
    response = register(api_client, is_staff=True, is_superuser=True, id=999)

    assert response.status_code == 201
    user = User.objects.get()
    assert response.json()["is_staff"] is False
    assert (user.is_staff, user.is_superuser) == (False, False)


def test_register_ignores_a_bearer_token_and_works_when_logged_in() -> None:
    staff = StaffFactory()

    response = register(client_for(staff), username="newcomer", email="new@example.com")

    assert response.status_code == 201
    assert User.objects.get(username="newcomer").is_staff is False


# --- login ------------------------------------------------------------------------------


def test_login_returns_an_access_and_a_refresh_token(api_client: APIClient) -> None:
    user = UserFactory(username="alice")

    response = login(api_client, "alice")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    access = AccessToken(body["access"])
    refresh = RefreshToken(body["refresh"])
    assert access["user_id"] == str(user.pk)
    assert access["token_type"] == "access"
    assert refresh["user_id"] == str(user.pk)
    assert refresh["token_type"] == "refresh"
    assert OutstandingToken.objects.filter(user=user, jti=refresh["jti"]).count() == 1


def test_login_access_token_authenticates_me(api_client: APIClient) -> None:
    user = UserFactory(username="alice")
    access = login(api_client, "alice").json()["access"]

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    response = api_client.get(ME_URL)

    assert response.status_code == 200
    assert response.json()["id"] == user.pk


@pytest.mark.parametrize("spelling", ["alice", "Alice", "ALICE"])
def test_login_ignores_the_case_of_the_username(api_client: APIClient, spelling: str) -> None:
    user = UserFactory(username="alice")

    response = login(api_client, spelling)

    assert response.status_code == 200
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert api_client.get(ME_URL).json()["id"] == user.pk


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong-password"), ("nobody", PASSWORD), ("ALICE", "wrong-password")],
)
def test_login_with_bad_credentials_is_401_in_the_error_shape(
    api_client: APIClient, username: str, password: str
) -> None:
    UserFactory(username="alice")

    response = login(api_client, username, password)

    assert_error(
        response,
        401,
        "authentication_failed",
        "No active account found with the given credentials",
    )
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert OutstandingToken.objects.count() == 0


def test_login_of_a_deactivated_account_is_401(api_client: APIClient) -> None:
    UserFactory(username="alice", is_active=False)

    response = login(api_client, "alice")

    assert_error(
        response,
        401,
        "authentication_failed",
        "No active account found with the given credentials",
    )


def test_login_without_fields_is_400(api_client: APIClient) -> None:
    response = api_client.post(LOGIN_URL, {}, format="json")

    assert_error(
        response,
        400,
        "validation_error",
        "The request contains invalid data.",
        {"username": ["This field is required."], "password": ["This field is required."]},
    )


def test_login_with_a_json_list_body_is_400(api_client: APIClient) -> None:
    response = api_client.post(LOGIN_URL, ["alice", PASSWORD], format="json")

    assert_error(
        response,
        400,
        "validation_error",
        "The request contains invalid data.",
        {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]},
    )


# --- refresh ----------------------------------------------------------------------------


def test_refresh_returns_a_new_access_token_and_rotates_the_refresh_token(
    api_client: APIClient,
) -> None:
    user = UserFactory(username="alice")
    tokens = login(api_client, "alice").json()

    response = api_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    assert body["access"] != tokens["access"]
    assert body["refresh"] != tokens["refresh"]
    assert AccessToken(body["access"])["user_id"] == str(user.pk)
    assert RefreshToken(body["refresh"])["user_id"] == str(user.pk)
    # rotation blacklists the token that was just exchanged
    old_jti = RefreshToken(tokens["refresh"], verify=False)["jti"]
    assert BlacklistedToken.objects.filter(token__jti=old_jti).count() == 1


def test_a_rotated_refresh_token_cannot_be_used_again(api_client: APIClient) -> None:
    UserFactory(username="alice")
    tokens = login(api_client, "alice").json()
    assert (
        api_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json").status_code
        == 200
    )

    response = api_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json")

    assert_error(
        response,
        401,
        "authentication_failed",
        "Token is blacklisted",
        {"code": "token_not_valid"},
    )


def test_refresh_with_garbage_is_401(api_client: APIClient) -> None:
    response = api_client.post(REFRESH_URL, {"refresh": "not-a-token"}, format="json")

    assert_error(
        response,
        401,
        "authentication_failed",
        "Token is invalid",
        {"code": "token_not_valid"},
    )


def test_refresh_with_an_access_token_is_401(api_client: APIClient) -> None:
    UserFactory(username="alice")
    tokens = login(api_client, "alice").json()

    response = api_client.post(REFRESH_URL, {"refresh": tokens["access"]}, format="json")

    assert_error(
        response,
        401,
        "authentication_failed",
        "Token has wrong type",
        {"code": "token_not_valid"},
    )


def test_refresh_for_a_deactivated_account_is_401(api_client: APIClient) -> None:
    user = UserFactory(username="alice")
    tokens = login(api_client, "alice").json()
    User.objects.filter(pk=user.pk).update(is_active=False)

    response = api_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json")

    assert_error(
        response, 401, "authentication_failed", "No active account found for the given token."
    )
    assert BlacklistedToken.objects.count() == 0


def test_refresh_for_a_deleted_account_is_401(api_client: APIClient) -> None:
    UserFactory(username="alice")
    refresh = login(APIClient(), "alice").json()["refresh"]
    User.objects.filter(username="alice").delete()

    response = APIClient(raise_request_exception=False).post(
        REFRESH_URL, {"refresh": refresh}, format="json"
    )

    assert_error(
        response, 401, "authentication_failed", "No active account found for the given token."
    )


# --- logout -----------------------------------------------------------------------------


def test_logout_revokes_the_refresh_token(api_client: APIClient) -> None:
    UserFactory(username="alice")
    tokens = login(api_client, "alice").json()

    response = api_client.post(LOGOUT_URL, {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 204
    assert response.content == b""
    jti = RefreshToken(tokens["refresh"], verify=False)["jti"]
    assert BlacklistedToken.objects.filter(token__jti=jti).count() == 1

    refreshed = api_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json")

    assert_error(
        refreshed,
        401,
        "authentication_failed",
        "Token is blacklisted",
        {"code": "token_not_valid"},
    )


def test_logout_twice_with_the_same_token_is_401(api_client: APIClient) -> None:
    UserFactory(username="alice")
    refresh = login(api_client, "alice").json()["refresh"]
    assert api_client.post(LOGOUT_URL, {"refresh": refresh}, format="json").status_code == 204

    response = api_client.post(LOGOUT_URL, {"refresh": refresh}, format="json")

    assert_error(response, 401, "token_not_valid", "The refresh token is invalid or expired.")
    assert BlacklistedToken.objects.count() == 1


@pytest.mark.parametrize("token", ["garbage", "a.b.c", ""])
def test_logout_with_garbage_is_rejected(api_client: APIClient, token: str) -> None:
    response = api_client.post(LOGOUT_URL, {"refresh": token}, format="json")

    if token:
        assert_error(response, 401, "token_not_valid", "The refresh token is invalid or expired.")
    else:
        assert_error(
            response,
            400,
            "validation_error",
            "The request contains invalid data.",
            {"refresh": ["This field may not be blank."]},
        )
    assert BlacklistedToken.objects.count() == 0


def test_logout_with_an_access_token_is_401_and_revokes_nothing(api_client: APIClient) -> None:
    UserFactory(username="alice")
    tokens = login(api_client, "alice").json()

    response = api_client.post(LOGOUT_URL, {"refresh": tokens["access"]}, format="json")

    assert_error(response, 401, "token_not_valid", "The refresh token is invalid or expired.")
    assert BlacklistedToken.objects.count() == 0
    still_valid = api_client.post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json")
    assert still_valid.status_code == 200


# --- me ---------------------------------------------------------------------------------


def test_me_returns_the_current_user() -> None:
    user = UserFactory(username="alice", email="alice@example.com", first_name="Alice")

    response = client_for(user).get(ME_URL)

    assert response.status_code == 200
    assert response.json() == {
        "id": user.pk,
        "username": "alice",
        "email": "alice@example.com",
        "first_name": "Alice",
        "last_name": user.last_name,
        "is_staff": False,
        "created_at": response.json()["created_at"],
        "updated_at": response.json()["updated_at"],
    }
    assert parse_datetime(response.json()["created_at"]) == user.created_at
    assert parse_datetime(response.json()["updated_at"]) == user.updated_at


def test_me_without_credentials_is_401(api_client: APIClient) -> None:
    response = api_client.get(ME_URL)

    assert_error(
        response, 401, "not_authenticated", "Authentication credentials were not provided."
    )
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_me_with_a_bad_token_is_401(api_client: APIClient) -> None:
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")

    response = api_client.get(ME_URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response.json()["error"]["message"] == "Given token not valid for any token type"


def test_patch_me_without_credentials_is_401(api_client: APIClient) -> None:
    response = api_client.patch(ME_URL, {"first_name": "Mallory"}, format="json")

    assert_error(
        response, 401, "not_authenticated", "Authentication credentials were not provided."
    )


def test_patch_me_changes_names_and_email() -> None:
    user = UserFactory(username="alice", email="alice@example.com")
    before = User.objects.get(pk=user.pk).updated_at

    response = client_for(user).patch(
        ME_URL,
        {"first_name": "Alicia", "last_name": "Smith", "email": "Alicia.Smith@EXAMPLE.org"},
        format="json",
    )

    assert response.status_code == 200
    user.refresh_from_db()
    assert (user.first_name, user.last_name, user.email) == (
        "Alicia",
        "Smith",
        "Alicia.Smith@example.org",
    )
    assert user.updated_at > before
    body = response.json()
    assert (body["first_name"], body["last_name"], body["email"]) == (
        "Alicia",
        "Smith",
        "Alicia.Smith@example.org",
    )


def test_patch_me_can_clear_names() -> None:
    user = UserFactory(first_name="Alice", last_name="Liddell")

    response = client_for(user).patch(ME_URL, {"first_name": "", "last_name": ""}, format="json")

    assert response.status_code == 200
    user.refresh_from_db()
    assert (user.first_name, user.last_name) == ("", "")


def test_patch_me_cannot_change_privileges_username_or_id() -> None:
    user = UserFactory(username="alice", email="alice@example.com", first_name="Alice")
    original_password = user.password

    response = client_for(user).patch(
        ME_URL,
        {
            "is_staff": True,
            "is_superuser": True,
            "is_active": False,
            "username": "root",
            "id": user.pk + 100,
            "password": "hijacked-password-1",
        },
        format="json",
    )

    assert response.status_code == 200
    stored = User.objects.get(pk=user.pk)
    assert (stored.username, stored.email, stored.first_name) == (
        "alice",
        "alice@example.com",
        "Alice",
    )
    assert (stored.is_staff, stored.is_superuser, stored.is_active) == (False, False, True)
    assert stored.password == original_password
    assert User.objects.count() == 1
    assert response.json()["is_staff"] is False
    assert response.json()["username"] == "alice"
    assert response.json()["id"] == user.pk


@pytest.mark.parametrize("email", ["taken@example.com", "TAKEN@example.com", "taken@EXAMPLE.com"])
def test_patch_me_with_an_email_taken_by_another_user_is_400(email: str) -> None:
    UserFactory(email="taken@example.com")
    user = UserFactory(email="mine@example.com", first_name="Alice")

    response = client_for(user).patch(
        ME_URL, {"email": email, "first_name": "Changed"}, format="json"
    )

    assert_error(
        response,
        400,
        "duplicate_account",
        "An account with these details already exists.",
        {"email": [EMAIL_TAKEN]},
    )
    stored = User.objects.get(pk=user.pk)
    assert (stored.email, stored.first_name) == ("mine@example.com", "Alice")


def test_patch_me_may_keep_its_own_email_in_another_case() -> None:
    user = UserFactory(email="mine@example.com")

    response = client_for(user).patch(ME_URL, {"email": "MINE@example.com"}, format="json")

    assert response.status_code == 200
    assert User.objects.get(pk=user.pk).email == "MINE@example.com"


def test_patch_me_with_an_invalid_email_is_400_and_changes_nothing() -> None:
    user = UserFactory(email="mine@example.com", first_name="Alice")

    response = client_for(user).patch(
        ME_URL, {"email": "nope", "first_name": "Changed"}, format="json"
    )

    assert_error(
        response,
        400,
        "validation_error",
        "The request contains invalid data.",
        {"email": ["Enter a valid email address."]},
    )
    stored = User.objects.get(pk=user.pk)
    assert (stored.email, stored.first_name) == ("mine@example.com", "Alice")


def test_me_with_the_token_of_a_deactivated_user_is_401() -> None:
    user = UserFactory()
    client = client_for(user)
    User.objects.filter(pk=user.pk).update(is_active=False)

    response = client.get(ME_URL)

    assert_error(
        response, 401, "authentication_failed", "User is inactive", {"code": "user_inactive"}
    )
