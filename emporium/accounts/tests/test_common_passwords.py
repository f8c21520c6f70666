"""Common passwords are refused wherever a password is set: registration and the admin."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.core.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

COMMON = ["password1", "iloveyou", "sunshine1", "football"]


@pytest.mark.parametrize("password", COMMON)
def test_registration_refuses_a_common_password(password: str) -> None:
    response = APIClient().post(
        "/api/auth/register/",
        {"username": "newcomer", "email": "new@example.com", "password": password},
        format="json",
    )

    assert response.status_code == 400
    assert "This password is too common." in response.json()["error"]["details"]["password"]
    assert not User.objects.filter(username="newcomer").exists()


@pytest.mark.parametrize("password", COMMON)
def test_the_admin_password_change_refuses_a_common_password(password: str) -> None:
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    customer = UserFactory(username="customer")
    client = Client()
    client.force_login(admin_user)

    response = client.post(
        f"/admin/accounts/user/{customer.pk}/password/",
        {"password1": password, "password2": password, "usable_password": "true"},
    )

    assert response.status_code == 200  # the form again, with the error
    assert b"This password is too common." in response.content
    customer.refresh_from_db()
    assert customer.check_password(PASSWORD)
