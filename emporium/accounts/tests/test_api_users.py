"""Contract and permission tests of /api/users/ (support reads, admins change)."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.accounts.roles import Role
from emporium.core.tests.factories import StaffFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db

LIST_URL = "/api/users/"
ADMIN_FIELDS = {
    "id",
    "username",
    "email",
    "first_name",
    "last_name",
    "is_staff",
    "is_superuser",
    "is_active",
    "last_login",
    "created_at",
    "updated_at",
}


def detail_url(user: User) -> str:
    return f"/api/users/{user.pk}/"


def assert_error(response: Any, status: int, code: str, message: str, details: Any = None) -> None:
    assert response.status_code == status, response.content
    assert response.json() == {
        "error": {"code": code, "message": message, "details": details if details else {}}
    }


def make_superuser(**kwargs: Any) -> User:
    return StaffFactory(is_superuser=True, **kwargs)


def snapshot(user: User) -> tuple[Any, ...]:
    stored = User.objects.get(pk=user.pk)
    return (
        stored.username,
        stored.email,
        stored.first_name,
        stored.last_name,
        stored.is_staff,
        stored.is_superuser,
        stored.is_active,
        stored.last_login,
        stored.password,
    )


def test_anonymous_cannot_list_users(api_client: APIClient) -> None:
    UserFactory()

    assert_error(
        api_client.get(LIST_URL),
        401,
        "not_authenticated",
        "Authentication credentials were not provided.",
    )


def test_anonymous_cannot_retrieve_a_user(api_client: APIClient) -> None:
    user = UserFactory()

    assert_error(
        api_client.get(detail_url(user)),
        401,
        "not_authenticated",
        "Authentication credentials were not provided.",
    )


@pytest.mark.parametrize("method", ["get", "patch"])
def test_customer_gets_403_on_the_user_list_and_detail(method: str) -> None:
    customer = UserFactory()
    other = UserFactory(first_name="Other")
    client = client_for(customer)

    for url in (LIST_URL, detail_url(other), detail_url(customer)):
        response = getattr(client, method)(url, {"first_name": "X"}, format="json")
        assert_error(
            response,
            403,
            "permission_denied",
            "You do not have permission to perform this action.",
        )
    assert User.objects.get(pk=other.pk).first_name == "Other"
    assert User.objects.get(pk=customer.pk).first_name == "Test"


def test_staff_lists_every_user_in_id_order() -> None:
    staff = StaffFactory()
    users = UserFactory.create_batch(3)

    response = client_for(staff).get(LIST_URL)

    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    assert body["previous"] is None
    assert [row["id"] for row in body["results"]] == [staff.pk, *(user.pk for user in users)]
    assert all(set(row) == ADMIN_FIELDS for row in body["results"])


def test_staff_user_list_is_paginated() -> None:
    staff = StaffFactory()
    users = UserFactory.create_batch(4)
    client = client_for(staff)

    first = client.get(LIST_URL, {"page_size": 2}).json()
    second = client.get(first["next"]).json()
    third = client.get(second["next"]).json()

    assert [row["id"] for row in first["results"]] == [staff.pk, users[0].pk]
    assert [row["id"] for row in second["results"]] == [users[1].pk, users[2].pk]
    assert [row["id"] for row in third["results"]] == [users[3].pk]
    assert third["next"] is None


def test_staff_retrieves_a_user_with_admin_fields() -> None:
    staff = StaffFactory()
    user = UserFactory(username="alice", email="alice@example.com", first_name="Alice")

    response = client_for(staff).get(detail_url(user))

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": user.pk,
        "username": "alice",
        "email": "alice@example.com",
        "first_name": "Alice",
        "last_name": user.last_name,
        "is_staff": False,
        "is_superuser": False,
        "is_active": True,
        "last_login": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert parse_datetime(body["created_at"]) == user.created_at
    assert parse_datetime(body["updated_at"]) == user.updated_at


def test_staff_gets_404_for_a_missing_user() -> None:
    staff = StaffFactory()

    response = client_for(staff).get(f"/api/users/{staff.pk + 1000}/")

    assert_error(response, 404, "not_found", "Not found.")


def test_staff_gets_404_for_a_non_numeric_id() -> None:
    staff = StaffFactory()

    response = client_for(staff).get("/api/users/abc/")

    assert_error(response, 404, "not_found", "Not found.")


@pytest.mark.parametrize("role", [Role.SUPPORT, Role.CATALOG_MANAGER])
def test_staff_without_the_change_permission_cannot_patch(role: Role) -> None:
    staff = StaffFactory(role=role)
    user = UserFactory()
    before = snapshot(user)

    response = client_for(staff).patch(
        detail_url(user), {"is_staff": True, "first_name": "Changed"}, format="json"
    )

    assert_error(
        response, 403, "permission_denied", "You do not have permission to perform this action."
    )
    assert snapshot(user) == before


def test_support_reads_accounts() -> None:
    support = StaffFactory(role=Role.SUPPORT)
    user = UserFactory()

    response = client_for(support).get(detail_url(user))

    assert response.status_code == 200
    assert response.json()["username"] == user.username


def test_catalog_manager_reads_no_account() -> None:
    manager = StaffFactory(role=Role.CATALOG_MANAGER)
    user = UserFactory()

    for url in (LIST_URL, detail_url(user)):
        assert_error(
            client_for(manager).get(url),
            403,
            "permission_denied",
            "You do not have permission to perform this action.",
        )


@pytest.mark.parametrize("role", [Role.SUPPORT, Role.ADMIN])
def test_staff_cannot_promote_themselves(role: Role) -> None:
    staff = StaffFactory(role=role)

    response = client_for(staff).patch(detail_url(staff), {"is_superuser": True}, format="json")

    assert response.status_code == (200 if role == Role.ADMIN else 403)
    assert User.objects.get(pk=staff.pk).is_superuser is False


@pytest.mark.parametrize("method", ["put", "post", "delete"])
def test_methods_other_than_get_and_patch_are_not_allowed(method: str) -> None:
    superuser = make_superuser()
    user = UserFactory()
    before = snapshot(user)
    url = LIST_URL if method == "post" else detail_url(user)

    response = getattr(client_for(superuser), method)(url, {"is_staff": True}, format="json")

    assert_error(response, 405, "method_not_allowed", f'Method "{method.upper()}" not allowed.')
    assert snapshot(user) == before
    assert User.objects.count() == 2


def test_superuser_can_grant_and_revoke_staff() -> None:
    superuser = make_superuser()
    user = UserFactory()
    client = client_for(superuser)
    before = User.objects.get(pk=user.pk).updated_at

    granted = client.patch(detail_url(user), {"is_staff": True}, format="json")

    assert granted.status_code == 200
    assert granted.json()["is_staff"] is True
    stored = User.objects.get(pk=user.pk)
    assert stored.is_staff is True
    assert stored.updated_at > before

    revoked = client.patch(detail_url(user), {"is_staff": False}, format="json")

    assert revoked.status_code == 200
    assert revoked.json()["is_staff"] is False
    assert User.objects.get(pk=user.pk).is_staff is False


def test_superuser_can_change_names_and_deactivate() -> None:
    superuser = make_superuser()
    user = UserFactory()

    response = client_for(superuser).patch(
        detail_url(user),
        {"first_name": "Renamed", "last_name": "Person", "is_active": False},
        format="json",
    )

    assert response.status_code == 200
    stored = User.objects.get(pk=user.pk)
    assert (stored.first_name, stored.last_name, stored.is_active) == ("Renamed", "Person", False)
    body = response.json()
    assert (body["first_name"], body["last_name"], body["is_active"]) == (
        "Renamed",
        "Person",
        False,
    )


def test_a_deactivated_user_is_locked_out_at_once() -> None:
    superuser = make_superuser()
    user = UserFactory()
    user_client = client_for(user)
    assert user_client.get("/api/auth/me/").status_code == 200

    client_for(superuser).patch(detail_url(user), {"is_active": False}, format="json")

    response = user_client.get("/api/auth/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_superuser_patch_ignores_read_only_fields() -> None:
    superuser = make_superuser()
    user = UserFactory(username="alice", email="alice@example.com")
    before = snapshot(user)

    response = client_for(superuser).patch(
        detail_url(user),
        {
            "id": user.pk + 50,
            "username": "mallory",
            "email": "mallory@example.com",
            "is_superuser": True,
            "last_login": "2020-01-01T00:00:00Z",
            "created_at": "2000-01-01T00:00:00Z",
            "password": "new-password-123",
        },
        format="json",
    )

    assert response.status_code == 200
    assert snapshot(user) == before
    assert response.json()["username"] == "alice"
    assert response.json()["is_superuser"] is False
    assert User.objects.filter(pk=user.pk + 50).exists() is False


def test_superuser_patch_with_an_invalid_value_is_400_and_changes_nothing() -> None:
    superuser = make_superuser()
    user = UserFactory()
    before = snapshot(user)

    response = client_for(superuser).patch(
        detail_url(user), {"is_staff": "maybe", "first_name": "Changed"}, format="json"
    )

    assert_error(
        response,
        400,
        "validation_error",
        "The request contains invalid data.",
        {"is_staff": ["Must be a valid boolean."]},
    )
    assert snapshot(user) == before


def test_superuser_patch_of_a_missing_user_is_404() -> None:
    superuser = make_superuser()

    response = client_for(superuser).patch(
        f"/api/users/{superuser.pk + 1000}/", {"is_staff": True}, format="json"
    )

    assert_error(response, 404, "not_found", "Not found.")
