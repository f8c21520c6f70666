"""The role groups: created by migrate, matching the table, assigned one per account."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command

from emporium.accounts.roles import ALL_PERMISSIONS, ROLE_PERMISSIONS, Role, roles_sync
from emporium.core.tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def group_permissions() -> dict[str, set[str]]:
    return {
        group.name: {
            f"{app_label}.{codename}"
            for app_label, codename in group.permissions.values_list(
                "content_type__app_label", "codename"
            )
        }
        for group in Group.objects.all()
    }


def expected_permissions() -> dict[str, set[str]]:
    every = {
        f"{app_label}.{codename}"
        for app_label, codename in Permission.objects.values_list(
            "content_type__app_label", "codename"
        )
    }
    return {
        str(role): every if names == ALL_PERMISSIONS else set(names)
        for role, names in ROLE_PERMISSIONS.items()
    }


def test_migrate_leaves_every_role_group_with_exactly_its_permissions() -> None:
    # The test database was built by migrate: the data migration, then the sync after it.
    assert group_permissions() == expected_permissions()


def test_the_table_names_only_permissions_that_exist() -> None:
    roles_sync(strict=True)  # raises UnknownPermission on a typo

    assert group_permissions() == expected_permissions()


def test_sync_restores_a_tampered_group_and_changes_nothing_when_run_again() -> None:
    support = Group.objects.get(name="support")
    support.permissions.add(Permission.objects.get(codename="change_order"))
    Group.objects.get(name="catalog_manager").delete()

    roles_sync()
    first = group_permissions()
    roles_sync()

    assert first == group_permissions() == expected_permissions()
    assert Group.objects.filter(name__in=[str(role) for role in Role]).count() == len(Role)


def test_the_roles_are_what_the_spec_says() -> None:
    support = ROLE_PERMISSIONS[Role.SUPPORT]
    manager = ROLE_PERMISSIONS[Role.CATALOG_MANAGER]
    assert isinstance(support, frozenset)
    assert isinstance(manager, frozenset)

    assert {name for name in support if not name.split(".")[1].startswith("view_")} == set()
    assert {"orders.view_order", "accounts.view_user"} <= support
    assert {name.split(".")[0] for name in manager} == {"catalog"}
    assert ROLE_PERMISSIONS[Role.CUSTOMER] == frozenset()


def test_role_assign_makes_the_role_the_only_one() -> None:
    user = StaffFactory(role=Role.ADMIN, username="dana")
    out = StringIO()

    call_command("role_assign", "Dana", "support", stdout=out)

    user.refresh_from_db()
    assert list(user.groups.values_list("name", flat=True)) == ["support"]
    assert user.is_staff is True
    assert user.has_perm("orders.view_order")
    assert not user.has_perm("orders.change_order")
    assert out.getvalue() == "dana is now support.\n"


def test_role_assign_back_to_customer_closes_the_admin_site() -> None:
    user = StaffFactory(role=Role.CATALOG_MANAGER, username="erin")

    call_command("role_assign", "erin", "customer", stdout=StringIO())

    user.refresh_from_db()
    assert (list(user.groups.values_list("name", flat=True)), user.is_staff) == (
        ["customer"],
        False,
    )


def test_role_assign_refuses_an_unknown_account_or_role() -> None:
    UserFactory(username="frank")

    with pytest.raises(CommandError, match="no account is called 'nobody'"):
        call_command("role_assign", "nobody", "admin")
    with pytest.raises(CommandError):
        call_command("role_assign", "frank", "superhero")
