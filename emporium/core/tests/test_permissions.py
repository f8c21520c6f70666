"""The shared permission classes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from emporium.core.permissions import IsStaff, IsStaffOrReadOnly, IsSuperuserForWrites
from emporium.core.tests.factories import StaffFactory, UserFactory

ALL_METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
SAFE = {"GET", "HEAD", "OPTIONS"}


def request_as(user: Any, method: str) -> Request:
    raw = APIRequestFactory().generic(method, "/api/x/")
    request = Request(raw)
    request.user = user
    return request


def users() -> dict[str, Any]:
    return {
        "anonymous": AnonymousUser(),
        "customer": UserFactory.build(),
        "staff": StaffFactory.build(),
        "superuser": StaffFactory.build(is_superuser=True),
        "superuser-not-staff": UserFactory.build(is_superuser=True),
    }


@pytest.mark.parametrize("method", ALL_METHODS)
def test_is_staff_or_read_only(method: str) -> None:
    allowed = {
        name: IsStaffOrReadOnly().has_permission(request_as(user, method), APIView())
        for name, user in users().items()
    }

    if method in SAFE:
        assert set(allowed.values()) == {True}
    else:
        assert allowed == {
            "anonymous": False,
            "customer": False,
            "staff": True,
            "superuser": True,
            "superuser-not-staff": False,
        }


@pytest.mark.parametrize("method", ALL_METHODS)
def test_is_staff(method: str) -> None:
    allowed = {
        name: IsStaff().has_permission(request_as(user, method), APIView())
        for name, user in users().items()
    }

    assert allowed == {
        "anonymous": False,
        "customer": False,
        "staff": True,
        "superuser": True,
        "superuser-not-staff": False,
    }


@pytest.mark.parametrize("method", ALL_METHODS)
def test_is_superuser_for_writes(method: str) -> None:
    allowed = {
        name: IsSuperuserForWrites().has_permission(request_as(user, method), APIView())
        for name, user in users().items()
    }

    if method in SAFE:
        assert set(allowed.values()) == {True}
    else:
        assert allowed == {
            "anonymous": False,
            "customer": False,
            "staff": False,
            "superuser": True,
            "superuser-not-staff": True,
        }
