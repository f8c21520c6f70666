"""Who may change which account: the API and the admin site obey one rule.

Only a superuser changes a superuser account, grants superuser status or
direct permissions, or adds or removes the admin role; nobody changes the
privileges or status of their own account. Each test is the attack by an
account in the admin role that is not a superuser, and checks that nothing
was written.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from emporium.accounts.models import User
from emporium.accounts.roles import Role, user_roles
from emporium.core.tests.factories import StaffFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db


def superuser() -> User:
    return StaffFactory(is_superuser=True)


def stored(user: User) -> tuple[Any, ...]:
    row = User.objects.get(pk=user.pk)
    return (
        row.is_active,
        row.is_staff,
        row.is_superuser,
        row.first_name,
        row.password,
        frozenset(row.groups.values_list("name", flat=True)),
        frozenset(row.user_permissions.values_list("codename", flat=True)),
    )


def assert_forbidden(response: Any, message: str) -> None:
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "account_change_forbidden"
    assert response.json()["error"]["message"] == message


# --- the users API ---------------------------------------------------------------------


@pytest.mark.parametrize("body", [{"is_active": False}, {"is_staff": False}, {"first_name": "X"}])
def test_api_admin_role_cannot_change_a_superuser(body: dict[str, Any]) -> None:
    admin, root = StaffFactory(role=Role.ADMIN), superuser()
    before = stored(root)

    response = client_for(admin).patch(f"/api/users/{root.pk}/", body, format="json")

    assert_forbidden(response, "Only a superuser may change a superuser account.")
    assert stored(root) == before


@pytest.mark.parametrize("body", [{"is_active": False}, {"is_staff": False}])
@pytest.mark.parametrize("make_actor", [lambda: StaffFactory(role=Role.ADMIN), superuser])
def test_api_nobody_changes_their_own_status(make_actor: Any, body: dict[str, Any]) -> None:
    actor = make_actor()
    before = stored(actor)

    response = client_for(actor).patch(f"/api/users/{actor.pk}/", body, format="json")

    assert_forbidden(
        response, "Nobody may change the privileges or the status of their own account."
    )
    assert response.json()["error"]["details"] == {"fields": sorted(body)}
    assert stored(actor) == before


def test_api_own_name_stays_changeable() -> None:
    admin = StaffFactory(role=Role.ADMIN)

    response = client_for(admin).patch(
        f"/api/users/{admin.pk}/", {"first_name": "Ada", "is_active": True}, format="json"
    )

    assert response.status_code == 200, response.content
    assert User.objects.get(pk=admin.pk).first_name == "Ada"


def test_api_admin_role_still_changes_other_accounts() -> None:
    admin, customer = StaffFactory(role=Role.ADMIN), UserFactory()

    response = client_for(admin).patch(
        f"/api/users/{customer.pk}/", {"is_active": False}, format="json"
    )

    assert response.status_code == 200, response.content
    assert User.objects.get(pk=customer.pk).is_active is False


def test_api_superuser_changes_another_superuser() -> None:
    root, other = superuser(), superuser()

    response = client_for(root).patch(
        f"/api/users/{other.pk}/", {"is_active": False}, format="json"
    )

    assert response.status_code == 200, response.content
    assert User.objects.get(pk=other.pk).is_active is False


# --- the admin site --------------------------------------------------------------------


def admin_site_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def change_form(user: User, **overrides: Any) -> dict[str, Any]:
    """The admin change form of ``user`` as the browser would post it, with ``overrides``."""
    data: dict[str, Any] = {
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "groups": list(user.groups.values_list("pk", flat=True)),
        "user_permissions": list(user.user_permissions.values_list("pk", flat=True)),
    }
    for flag in ("is_active", "is_staff", "is_superuser"):
        if getattr(user, flag):
            data[flag] = "on"
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def change_url(user: User) -> str:
    return f"/admin/accounts/user/{user.pk}/change/"


def test_admin_site_admin_role_cannot_deactivate_a_superuser() -> None:
    admin, root = StaffFactory(role=Role.ADMIN), superuser()
    before = stored(root)

    response = admin_site_client(admin).post(change_url(root), change_form(root, is_active=None))

    assert response.status_code == 403
    assert stored(root) == before


def test_admin_site_admin_role_cannot_reset_a_superusers_password() -> None:
    admin, root = StaffFactory(role=Role.ADMIN), superuser()
    before = stored(root)

    response = admin_site_client(admin).post(
        f"/admin/accounts/user/{root.pk}/password/",
        {"password1": "a-new-long-passphrase-91", "password2": "a-new-long-passphrase-91"},
    )

    assert response.status_code == 403
    assert stored(root) == before


def test_admin_site_admin_role_cannot_delete_a_superuser() -> None:
    admin, root = StaffFactory(role=Role.ADMIN), superuser()

    response = admin_site_client(admin).post(
        f"/admin/accounts/user/{root.pk}/delete/", {"post": "yes"}
    )

    assert response.status_code == 403
    assert User.objects.filter(pk=root.pk).exists()


def test_admin_site_bulk_delete_including_a_superuser_deletes_nothing() -> None:
    admin, root, customer = StaffFactory(role=Role.ADMIN), superuser(), UserFactory()

    response = admin_site_client(admin).post(
        "/admin/accounts/user/",
        {"action": "delete_selected", "_selected_action": [customer.pk, root.pk], "post": "yes"},
    )

    assert response.status_code == 403
    assert User.objects.filter(pk__in=[root.pk, customer.pk]).count() == 2


def test_admin_site_admin_role_cannot_make_itself_superuser() -> None:
    admin = StaffFactory(role=Role.ADMIN)
    before = stored(admin)

    response = admin_site_client(admin).post(
        change_url(admin), change_form(admin, is_superuser="on")
    )

    assert response.status_code == 403
    assert stored(admin) == before


def test_admin_site_admin_role_cannot_make_another_superuser() -> None:
    admin, customer = StaffFactory(role=Role.ADMIN), UserFactory()
    before = stored(customer)

    response = admin_site_client(admin).post(
        change_url(customer), change_form(customer, is_superuser="on")
    )

    assert response.status_code == 403
    assert stored(customer) == before


def test_admin_site_admin_role_cannot_grant_direct_permissions() -> None:
    admin, customer = StaffFactory(role=Role.ADMIN), UserFactory()
    before = stored(customer)
    permission = Permission.objects.get(codename="change_user")

    response = admin_site_client(admin).post(
        change_url(customer), change_form(customer, user_permissions=[permission.pk])
    )

    assert response.status_code == 403
    assert stored(customer) == before


@pytest.mark.parametrize("grant", [True, False])
def test_admin_site_admin_role_cannot_assign_or_remove_the_admin_role(grant: bool) -> None:
    admin = StaffFactory(role=Role.ADMIN)
    target = UserFactory() if grant else StaffFactory(role=Role.ADMIN)
    before = stored(target)
    groups = [Group.objects.get(name=Role.ADMIN).pk] if grant else []

    response = admin_site_client(admin).post(change_url(target), change_form(target, groups=groups))

    assert response.status_code == 403
    assert stored(target) == before


def test_admin_site_admin_role_cannot_change_its_own_groups() -> None:
    admin = StaffFactory(role=Role.ADMIN)
    support = Group.objects.get(name=Role.SUPPORT).pk
    admin_group = Group.objects.get(name=Role.ADMIN).pk
    before = stored(admin)

    response = admin_site_client(admin).post(
        change_url(admin), change_form(admin, groups=[admin_group, support])
    )

    assert response.status_code == 403
    assert stored(admin) == before


def test_admin_site_admin_role_assigns_the_support_role() -> None:
    admin, customer = StaffFactory(role=Role.ADMIN), UserFactory()

    response = admin_site_client(admin).post(
        change_url(customer),
        change_form(customer, groups=[Group.objects.get(name=Role.SUPPORT).pk], is_staff="on"),
    )

    assert response.status_code == 302, response.content
    assert user_roles(user=User.objects.get(pk=customer.pk)) == {Role.SUPPORT}


def test_admin_site_superuser_assigns_the_admin_role() -> None:
    root, customer = superuser(), UserFactory()

    response = admin_site_client(root).post(
        change_url(customer),
        change_form(customer, groups=[Group.objects.get(name=Role.ADMIN).pk], is_superuser="on"),
    )

    assert response.status_code == 302, response.content
    changed = User.objects.get(pk=customer.pk)
    assert (user_roles(user=changed), changed.is_superuser) == ({Role.ADMIN}, True)
