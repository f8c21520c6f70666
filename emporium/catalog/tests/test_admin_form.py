from __future__ import annotations

import pytest
from django.test import Client

from emporium.catalog import services
from emporium.catalog.models import Category
from emporium.core.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_admin_refuses_moving_a_category_under_its_descendant_with_a_form_error() -> None:
    root = services.category_create(name="Root")
    child = services.category_create(name="Child", parent=root)
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    response = client.post(
        f"/admin/catalog/category/{root.pk}/change/", {"name": "Root", "parent": child.pk}
    )

    assert response.status_code == 200  # the form comes back with the error, no crash
    assert "cannot move under itself" in response.content.decode()
    root.refresh_from_db()
    assert root.parent_id is None
    assert root.path == f"{root.pk}/"


def test_admin_moves_a_category_through_the_services() -> None:
    root = services.category_create(name="Root")
    other = services.category_create(name="Other")
    leaf = services.category_create(name="Leaf", parent=root)
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    response = client.post(
        f"/admin/catalog/category/{root.pk}/change/", {"name": "Root", "parent": other.pk}
    )

    assert response.status_code == 302
    leaf.refresh_from_db()
    assert leaf.path == f"{other.pk}/{root.pk}/{leaf.pk}/"
    assert Category.objects.get(pk=root.pk).depth == 1
