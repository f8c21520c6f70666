"""The shared permission class: each action needs what its view's table names."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from emporium.accounts.roles import Role
from emporium.core.permissions import AUTHENTICATED, PUBLIC, ActionPermissions
from emporium.core.tests.factories import StaffFactory, UserFactory


class _TableView(APIView):
    def get(self, request: Request) -> None: ...
    def post(self, request: Request) -> None: ...
    def put(self, request: Request) -> None: ...
    def patch(self, request: Request) -> None: ...
    def delete(self, request: Request) -> None: ...

    required_permissions = {
        "get": PUBLIC,
        "post": AUTHENTICATED,
        "patch": ("catalog.change_product",),
        "delete": ("catalog.change_product", "orders.change_order"),
    }


def allowed(user: Any, method: str, view: APIView | None = None) -> bool:
    request = Request(APIRequestFactory().generic(method, "/api/x/"))
    request.user = user
    return ActionPermissions().has_permission(request, view or _TableView())


def accounts() -> dict[str, Any]:
    return {
        "anonymous": AnonymousUser(),
        "customer": UserFactory(),
        "staff-without-role": UserFactory(is_staff=True),
        "support": StaffFactory(role=Role.SUPPORT),
        "catalog_manager": StaffFactory(role=Role.CATALOG_MANAGER),
        "admin": StaffFactory(role=Role.ADMIN),
        "superuser-without-role": UserFactory(is_superuser=True),
    }


EXPECTED = {
    # method: the accounts allowed
    "GET": {
        "anonymous",
        "customer",
        "staff-without-role",
        "support",
        "catalog_manager",
        "admin",
        "superuser-without-role",
    },
    "HEAD": {  # follows GET
        "anonymous",
        "customer",
        "staff-without-role",
        "support",
        "catalog_manager",
        "admin",
        "superuser-without-role",
    },
    "OPTIONS": {  # follows GET
        "anonymous",
        "customer",
        "staff-without-role",
        "support",
        "catalog_manager",
        "admin",
        "superuser-without-role",
    },
    "POST": {
        "customer",
        "staff-without-role",
        "support",
        "catalog_manager",
        "admin",
        "superuser-without-role",
    },
    "PATCH": {"catalog_manager", "admin", "superuser-without-role"},
    "DELETE": {"admin", "superuser-without-role"},
    "PUT": set(),  # not in the table: refused
}


@pytest.mark.django_db
@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_each_method_needs_what_the_table_names(method: str) -> None:
    granted = {name for name, user in accounts().items() if allowed(user, method)}

    assert granted == EXPECTED[method]


@pytest.mark.django_db
def test_a_view_without_a_table_refuses_everyone() -> None:
    class NoTable(APIView):
        def get(self, request: Request) -> None: ...

    granted = {name for name, user in accounts().items() if allowed(user, "GET", NoTable())}

    assert granted == set()


@pytest.mark.django_db
def test_a_method_the_view_does_not_answer_needs_what_reading_needs() -> None:
    class ReadForAdmins(APIView):
        def get(self, request: Request) -> None: ...

        required_permissions = {"get": ("orders.view_order",)}

    # The view then answers 405; nobody learns more than a GET would tell them.
    granted = {
        name for name, user in accounts().items() if allowed(user, "DELETE", ReadForAdmins())
    }

    assert granted == {"support", "admin", "superuser-without-role"}


@pytest.mark.django_db
def test_options_without_a_get_needs_a_signed_in_account() -> None:
    class PostOnly(APIView):
        def post(self, request: Request) -> None: ...

        required_permissions = {"post": PUBLIC}

    assert allowed(AnonymousUser(), "OPTIONS", PostOnly()) is False
    assert allowed(UserFactory(), "OPTIONS", PostOnly()) is True


@pytest.mark.django_db
def test_an_inactive_admin_is_refused() -> None:
    admin = StaffFactory(role=Role.ADMIN)
    admin.is_active = False

    assert allowed(admin, "PATCH") is False
