"""/api/categories/: public reads, staff writes through the tree services."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.catalog import services
from emporium.catalog.models import MAX_CATEGORY_DEPTH, Category
from emporium.catalog.tests.support import (
    CATEGORY_LIST_URL,
    api_datetime,
    category_tree_state,
    category_url,
    error_of,
    result_ids,
)
from emporium.core.tests.factories import ProductFactory, StaffFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> APIClient:
    return client_for(StaffFactory())


@pytest.fixture
def customer() -> User:
    return UserFactory()


def _body(category: Category) -> dict[str, Any]:
    category.refresh_from_db()
    return {
        "id": category.pk,
        "name": category.name,
        "parent": category.parent_id,
        "depth": category.depth,
        "created_at": api_datetime(category.created_at),
        "updated_at": api_datetime(category.updated_at),
    }


# --- reads --------------------------------------------------------------------------------


def test_anyone_lists_the_tree_in_path_order(api_client: APIClient) -> None:
    books = services.category_create(name="Books")
    electronics = services.category_create(name="Electronics")
    audio = services.category_create(name="Audio", parent=books)
    fiction = services.category_create(name="Fiction", parent=books)
    crime = services.category_create(name="Crime", parent=audio)
    expected_order = sorted([books, electronics, audio, fiction, crime], key=lambda c: c.path)

    response = api_client.get(CATEGORY_LIST_URL)

    assert response.status_code == 200
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [_body(category) for category in expected_order],
    }
    # path order puts every category after its parent
    ids = result_ids(response)
    assert ids.index(books.pk) < ids.index(audio.pk) < ids.index(crime.pk)


def test_anyone_retrieves_a_category(api_client: APIClient) -> None:
    root = services.category_create(name="Root")
    child = services.category_create(name="Child", parent=root)

    response = api_client.get(category_url(child.pk))

    assert response.status_code == 200
    assert response.json() == _body(child)
    assert response.json()["depth"] == 1


def test_retrieving_a_missing_category_is_404(api_client: APIClient) -> None:
    response = api_client.get(category_url(999_999))

    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "Not found.", "details": {}}


# --- who may write ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target"),
    [("post", "list"), ("patch", "detail"), ("delete", "detail")],
)
def test_anonymous_writes_are_401_and_customer_writes_are_403(
    api_client: APIClient, customer: User, method: str, target: str
) -> None:
    root = services.category_create(name="Root")
    url = CATEGORY_LIST_URL if target == "list" else category_url(root.pk)
    before = category_tree_state()

    anonymous = getattr(api_client, method)(url, {"name": "New"}, format="json")
    as_customer = getattr(client_for(customer), method)(url, {"name": "New"}, format="json")

    assert anonymous.status_code == 401
    assert error_of(anonymous)["code"] == "not_authenticated"
    assert as_customer.status_code == 403
    assert error_of(as_customer)["code"] == "permission_denied"
    assert category_tree_state() == before


# --- staff create -----------------------------------------------------------------------------


def test_staff_creates_a_root_and_a_child(staff_client: APIClient) -> None:
    root_response = staff_client.post(CATEGORY_LIST_URL, {"name": "Garden"}, format="json")

    assert root_response.status_code == 201
    root = Category.objects.get(name="Garden")
    assert root_response.json() == _body(root)
    assert (root.parent_id, root.path, root.depth) == (None, f"{root.pk}/", 0)

    child_response = staff_client.post(
        CATEGORY_LIST_URL, {"name": "Tools", "parent": root.pk}, format="json"
    )

    assert child_response.status_code == 201
    child = Category.objects.get(name="Tools")
    assert child_response.json() == _body(child)
    assert (child.parent_id, child.path, child.depth) == (root.pk, f"{root.pk}/{child.pk}/", 1)


def test_read_only_fields_are_ignored_on_create(staff_client: APIClient) -> None:
    response = staff_client.post(
        CATEGORY_LIST_URL,
        {"name": "Garden", "id": 424_242, "depth": 5, "created_at": "2001-01-01T00:00:00Z"},
        format="json",
    )

    assert response.status_code == 201
    category = Category.objects.get(name="Garden")
    assert category.pk != 424_242
    assert (category.depth, category.path) == (0, f"{category.pk}/")
    assert category.created_at.year != 2001
    assert response.json() == _body(category)


def test_read_only_fields_are_ignored_on_update(staff_client: APIClient) -> None:
    category = services.category_create(name="Garden")
    created_at = category.created_at

    response = staff_client.patch(
        category_url(category.pk),
        {"name": "Yard", "id": 424_242, "depth": 5, "created_at": "2001-01-01T00:00:00Z"},
        format="json",
    )

    assert response.status_code == 200
    category.refresh_from_db()
    assert (category.pk, category.name, category.depth, category.created_at) == (
        response.json()["id"],
        "Yard",
        0,
        created_at,
    )


def test_create_with_an_unknown_parent_is_400(staff_client: APIClient) -> None:
    response = staff_client.post(
        CATEGORY_LIST_URL, {"name": "Orphan", "parent": 999_999}, format="json"
    )

    assert response.status_code == 400
    assert error_of(response) == {
        "code": "validation_error",
        "message": "The request contains invalid data.",
        "details": {"parent": ['Invalid pk "999999" - object does not exist.']},
    }
    assert Category.objects.count() == 0


def test_create_below_the_deepest_level_is_400_category_too_deep(staff_client: APIClient) -> None:
    parent = None
    for level in range(MAX_CATEGORY_DEPTH):
        parent = services.category_create(name=f"Level {level}", parent=parent)
    assert parent is not None
    before = category_tree_state()

    response = staff_client.post(
        CATEGORY_LIST_URL, {"name": "Too deep", "parent": parent.pk}, format="json"
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "category_too_deep"
    assert category_tree_state() == before


def test_a_duplicate_child_name_is_400(staff_client: APIClient) -> None:
    root = services.category_create(name="Root")
    services.category_create(name="Shared", parent=root)
    before = category_tree_state()

    response = staff_client.post(
        CATEGORY_LIST_URL, {"name": "Shared", "parent": root.pk}, format="json"
    )

    assert response.status_code == 400
    assert error_of(response) == NAME_TAKEN
    assert category_tree_state() == before


NAME_TAKEN = {
    "code": "category_name_taken",
    "message": "A category with this name already exists at that place in the tree.",
    "details": {"name": ["A category with this name already exists at that place in the tree."]},
}


def test_a_duplicate_root_name_is_400_like_a_duplicate_child_name(staff_client: APIClient) -> None:
    services.category_create(name="Shared")
    before = category_tree_state()

    response = staff_client.post(CATEGORY_LIST_URL, {"name": "Shared"}, format="json")

    assert response.status_code == 400
    assert error_of(response) == NAME_TAKEN
    assert category_tree_state() == before


def test_renaming_onto_a_sibling_name_is_400(staff_client: APIClient) -> None:
    root = services.category_create(name="Root")
    services.category_create(name="Taken", parent=root)
    other = services.category_create(name="Other", parent=root)
    before = category_tree_state()

    response = staff_client.patch(
        f"{CATEGORY_LIST_URL}{other.pk}/", {"name": "Taken"}, format="json"
    )

    assert response.status_code == 400
    assert error_of(response) == NAME_TAKEN
    assert category_tree_state() == before


def test_a_child_may_share_a_name_with_a_root(staff_client: APIClient) -> None:
    root = services.category_create(name="Shared")

    response = staff_client.post(
        CATEGORY_LIST_URL, {"name": "Shared", "parent": root.pk}, format="json"
    )

    assert response.status_code == 201
    assert Category.objects.filter(name="Shared").count() == 2


# --- staff update -----------------------------------------------------------------------------


def test_staff_renames_without_moving(staff_client: APIClient) -> None:
    root = services.category_create(name="Root")
    child = services.category_create(name="Child", parent=root)

    response = staff_client.patch(category_url(child.pk), {"name": "Renamed"}, format="json")

    assert response.status_code == 200
    assert response.json() == _body(child)
    assert (child.name, child.parent_id, child.path) == (
        "Renamed",
        root.pk,
        f"{root.pk}/{child.pk}/",
    )


def test_staff_moves_a_subtree_and_every_descendant_follows(staff_client: APIClient) -> None:
    old_root = services.category_create(name="Old")
    new_root = services.category_create(name="New")
    moved = services.category_create(name="Moved", parent=old_root)
    below = services.category_create(name="Below", parent=moved)

    response = staff_client.patch(category_url(moved.pk), {"parent": new_root.pk}, format="json")

    assert response.status_code == 200
    assert response.json()["parent"] == new_root.pk
    assert response.json()["depth"] == 1
    below.refresh_from_db()
    assert below.path == f"{new_root.pk}/{moved.pk}/{below.pk}/"

    to_root = staff_client.patch(category_url(moved.pk), {"parent": None}, format="json")

    assert to_root.status_code == 200
    assert (to_root.json()["parent"], to_root.json()["depth"]) == (None, 0)
    below.refresh_from_db()
    assert (below.path, below.depth) == (f"{moved.pk}/{below.pk}/", 1)


@pytest.mark.parametrize("target", ["itself", "descendant"])
def test_moving_under_itself_or_a_descendant_is_400_category_cycle(
    staff_client: APIClient, target: str
) -> None:
    root = services.category_create(name="Root")
    child = services.category_create(name="Child", parent=root)
    grandchild = services.category_create(name="Grandchild", parent=child)
    new_parent = child if target == "itself" else grandchild
    before = category_tree_state()

    response = staff_client.patch(
        category_url(child.pk), {"name": "Renamed", "parent": new_parent.pk}, format="json"
    )

    assert response.status_code == 400
    assert error_of(response) == {
        "code": "category_cycle",
        "message": "A category cannot be moved under itself or one of its descendants.",
        "details": {"parent": ["That would create a cycle."]},
    }
    assert category_tree_state() == before


def test_moving_next_to_a_sibling_with_the_same_name_is_400(staff_client: APIClient) -> None:
    first = services.category_create(name="First")
    second = services.category_create(name="Second")
    services.category_create(name="Shared", parent=first)
    shared = services.category_create(name="Shared", parent=second)
    before = category_tree_state()

    response = staff_client.patch(category_url(shared.pk), {"parent": first.pk}, format="json")

    assert response.status_code == 400
    assert error_of(response) == NAME_TAKEN
    assert category_tree_state() == before


# --- staff delete -----------------------------------------------------------------------------


def test_staff_deletes_an_empty_leaf(staff_client: APIClient) -> None:
    root = services.category_create(name="Root")
    leaf = services.category_create(name="Leaf", parent=root)

    response = staff_client.delete(category_url(leaf.pk))

    assert response.status_code == 204
    assert list(Category.objects.values_list("pk", flat=True)) == [root.pk]


@pytest.mark.parametrize("holds", ["children", "products"])
def test_deleting_a_category_in_use_is_409_in_use(staff_client: APIClient, holds: str) -> None:
    category = services.category_create(name="Busy")
    if holds == "children":
        services.category_create(name="Child", parent=category)
    else:
        ProductFactory(category=category)
    before = category_tree_state()

    response = staff_client.delete(category_url(category.pk))

    assert response.status_code == 409
    assert error_of(response) == {
        "code": "in_use",
        "message": "This object is still referenced by other records.",
        "details": {},
    }
    assert category_tree_state() == before
