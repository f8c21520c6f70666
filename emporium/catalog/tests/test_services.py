"""Category tree and product services."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from emporium.catalog import services
from emporium.catalog.models import MAX_CATEGORY_DEPTH, Category, Product
from emporium.catalog.services import CategoryCycle, CategoryTooDeep
from emporium.catalog.tests.support import category_tree_state, product_state
from emporium.core.tests.factories import CategoryFactory, OrderItemFactory, ProductFactory

pytestmark = pytest.mark.django_db


def _chain(length: int, prefix: str = "Level") -> list[Category]:
    """A straight line of ``length`` categories, each the child of the one before."""
    chain: list[Category] = []
    parent = None
    for level in range(length):
        parent = services.category_create(name=f"{prefix} {level}", parent=parent)
        chain.append(parent)
    return chain


# --- create -------------------------------------------------------------------------------


def test_category_create_sets_path_and_depth_for_root_child_and_grandchild() -> None:
    root = services.category_create(name="Electronics")
    child = services.category_create(name="Audio", parent=root)
    grandchild = services.category_create(name="Headphones", parent=child)

    assert (root.parent_id, root.path, root.depth) == (None, f"{root.pk}/", 0)
    assert (child.parent_id, child.path, child.depth) == (root.pk, f"{root.pk}/{child.pk}/", 1)
    assert (grandchild.parent_id, grandchild.path, grandchild.depth) == (
        child.pk,
        f"{root.pk}/{child.pk}/{grandchild.pk}/",
        2,
    )
    # The stored rows, not only the returned objects, carry the paths.
    assert category_tree_state() == [
        (root.pk, None, f"{root.pk}/", 0, "Electronics"),
        (child.pk, root.pk, f"{root.pk}/{child.pk}/", 1, "Audio"),
        (grandchild.pk, child.pk, f"{root.pk}/{child.pk}/{grandchild.pk}/", 2, "Headphones"),
    ]


def test_category_create_allows_the_deepest_level_and_refuses_one_more() -> None:
    chain = _chain(MAX_CATEGORY_DEPTH)
    assert [category.depth for category in chain] == list(range(MAX_CATEGORY_DEPTH))
    before = category_tree_state()

    with pytest.raises(CategoryTooDeep) as raised:
        services.category_create(name="Too deep", parent=chain[-1])

    assert raised.value.code == "category_too_deep"
    assert raised.value.status_code == 400
    assert category_tree_state() == before


def test_category_create_refuses_a_duplicate_sibling_name_and_a_duplicate_root_name() -> None:
    root = services.category_create(name="Home")
    services.category_create(name="Kitchen", parent=root)
    before = category_tree_state()

    with pytest.raises(services.CategoryNameTaken):
        services.category_create(name="Kitchen", parent=root)
    with pytest.raises(services.CategoryNameTaken):
        services.category_create(name="Home")

    assert category_tree_state() == before


def test_the_same_name_is_allowed_under_different_parents_and_as_a_root() -> None:
    women = services.category_create(name="Women")
    hiking = services.category_create(name="Hiking")

    first = services.category_create(name="Boots", parent=women)
    second = services.category_create(name="Boots", parent=hiking)
    root = services.category_create(name="Boots")

    assert Category.objects.filter(name="Boots").count() == 3
    assert {first.parent_id, second.parent_id, root.parent_id} == {women.pk, hiking.pk, None}


# --- update (rename and move) ---------------------------------------------------------------


def test_category_update_renames_without_moving() -> None:
    root = services.category_create(name="Root")
    child = services.category_create(name="Child", parent=root)

    updated = services.category_update(category=child, name="Renamed")

    child.refresh_from_db()
    assert (updated.name, child.name) == ("Renamed", "Renamed")
    assert (child.parent_id, child.path, child.depth) == (root.pk, f"{root.pk}/{child.pk}/", 1)


def test_moving_a_subtree_rewrites_the_paths_and_depths_of_all_descendants() -> None:
    electronics = services.category_create(name="Electronics")
    audio = services.category_create(name="Audio", parent=electronics)
    headphones = services.category_create(name="Headphones", parent=audio)
    in_ear = services.category_create(name="In-ear", parent=headphones)
    speakers = services.category_create(name="Speakers", parent=audio)
    phones = services.category_create(name="Phones", parent=electronics)  # a sibling: untouched
    home = services.category_create(name="Home")
    kitchen = services.category_create(name="Kitchen", parent=home)

    # Down one level: Audio goes from depth 1 to depth 2 under Home/Kitchen.
    moved = services.category_update(category=audio, parent=kitchen)

    assert (moved.parent_id, moved.path, moved.depth) == (
        kitchen.pk,
        f"{home.pk}/{kitchen.pk}/{audio.pk}/",
        2,
    )
    e, a, h, i, s, p, ho, k = (
        electronics.pk,
        audio.pk,
        headphones.pk,
        in_ear.pk,
        speakers.pk,
        phones.pk,
        home.pk,
        kitchen.pk,
    )
    assert category_tree_state() == [
        (e, None, f"{e}/", 0, "Electronics"),
        (a, k, f"{ho}/{k}/{a}/", 2, "Audio"),
        (h, a, f"{ho}/{k}/{a}/{h}/", 3, "Headphones"),
        (i, h, f"{ho}/{k}/{a}/{h}/{i}/", 4, "In-ear"),
        (s, a, f"{ho}/{k}/{a}/{s}/", 3, "Speakers"),
        (p, e, f"{e}/{p}/", 1, "Phones"),
        (ho, None, f"{ho}/", 0, "Home"),
        (k, ho, f"{ho}/{k}/", 1, "Kitchen"),
    ]

    # Up to the top: parent=None makes Audio a root and shortens every path below it.
    services.category_update(category=audio, parent=None)

    assert category_tree_state() == [
        (e, None, f"{e}/", 0, "Electronics"),
        (a, None, f"{a}/", 0, "Audio"),
        (h, a, f"{a}/{h}/", 1, "Headphones"),
        (i, h, f"{a}/{h}/{i}/", 2, "In-ear"),
        (s, a, f"{a}/{s}/", 1, "Speakers"),
        (p, e, f"{e}/{p}/", 1, "Phones"),
        (ho, None, f"{ho}/", 0, "Home"),
        (k, ho, f"{ho}/{k}/", 1, "Kitchen"),
    ]


def test_category_update_without_parent_keeps_the_category_where_it_is() -> None:
    root = services.category_create(name="Root")
    child = services.category_create(name="Child", parent=root)
    before = category_tree_state()

    services.category_update(category=child)
    services.category_update(category=child, parent=root)

    assert category_tree_state() == before


@pytest.mark.parametrize("target", ["itself", "child", "grandchild"])
def test_moving_a_category_under_itself_or_a_descendant_is_a_cycle(target: str) -> None:
    root = services.category_create(name="Root")
    child = services.category_create(name="Child", parent=root)
    grandchild = services.category_create(name="Grandchild", parent=child)
    new_parent = {"itself": root, "child": child, "grandchild": grandchild}[target]
    before = category_tree_state()

    with pytest.raises(CategoryCycle) as raised:
        services.category_update(category=root, name="Renamed", parent=new_parent)

    assert raised.value.code == "category_cycle"
    assert raised.value.details == {"parent": ["That would create a cycle."]}
    assert category_tree_state() == before  # not even the rename was written


def test_a_category_whose_id_is_a_prefix_of_another_is_not_its_ancestor() -> None:
    # Paths end with "/", so "7000001/" is not a prefix of "70000010/".
    short = Category.objects.create(id=7_000_001, name="Short", path="7000001/", depth=0)
    long = Category.objects.create(id=70_000_010, name="Long", path="70000010/", depth=0)

    services.category_update(category=short, parent=long)

    short.refresh_from_db()
    assert (short.parent_id, short.path, short.depth) == (long.pk, "70000010/7000001/", 1)


def test_a_move_that_would_push_a_descendant_past_the_depth_limit_is_refused() -> None:
    chain = _chain(MAX_CATEGORY_DEPTH - 2)  # depths 0 .. 5
    subtree = _chain(3, prefix="Sub")  # depths 0 .. 2; moved below depth 5 it would reach 8
    before = category_tree_state()

    with pytest.raises(CategoryTooDeep):
        services.category_update(category=subtree[0], parent=chain[-1])

    assert category_tree_state() == before

    # One level higher fits exactly: the deepest descendant lands on the last allowed level.
    services.category_update(category=subtree[0], parent=chain[-2])

    assert [Category.objects.get(pk=category.pk).depth for category in subtree] == [
        MAX_CATEGORY_DEPTH - 3,
        MAX_CATEGORY_DEPTH - 2,
        MAX_CATEGORY_DEPTH - 1,
    ]


def test_moving_next_to_a_sibling_with_the_same_name_is_refused() -> None:
    first = services.category_create(name="First")
    second = services.category_create(name="Second")
    services.category_create(name="Shared", parent=first)
    shared = services.category_create(name="Shared", parent=second)
    before = category_tree_state()

    with pytest.raises(services.CategoryNameTaken):
        services.category_update(category=shared, parent=first)

    assert category_tree_state() == before


# --- delete -------------------------------------------------------------------------------


def test_category_delete_removes_an_empty_leaf() -> None:
    root = services.category_create(name="Root")
    leaf = services.category_create(name="Leaf", parent=root)

    services.category_delete(category=leaf)

    assert list(Category.objects.values_list("pk", flat=True)) == [root.pk]


def test_category_delete_refuses_a_category_with_children_or_products() -> None:
    root = services.category_create(name="Root")
    leaf = services.category_create(name="Leaf", parent=root)
    ProductFactory(category=leaf)
    before = category_tree_state()

    with pytest.raises(ProtectedError), transaction.atomic():
        services.category_delete(category=root)
    with pytest.raises(ProtectedError), transaction.atomic():
        services.category_delete(category=leaf)

    assert category_tree_state() == before


# --- products -------------------------------------------------------------------------------


def test_product_create_stores_every_field() -> None:
    category = CategoryFactory()

    product = services.product_create(
        name="Lamp",
        sku="LAMP-1",
        price=Decimal("19.99"),
        category=category,
        stock_quantity=3,
        description="Bright.",
        attributes={"colour": "red"},
    )

    assert Product.objects.filter(pk=product.pk).values(
        "name",
        "sku",
        "price",
        "category_id",
        "stock_quantity",
        "description",
        "attributes",
        "review_count",
        "rating_total",
    ).get() == {
        "name": "Lamp",
        "sku": "LAMP-1",
        "price": Decimal("19.99"),
        "category_id": category.pk,
        "stock_quantity": 3,
        "description": "Bright.",
        "attributes": {"colour": "red"},
        "review_count": 0,
        "rating_total": 0,
    }


def test_product_create_with_a_taken_sku_is_refused_by_the_database() -> None:
    existing = ProductFactory(sku="TAKEN")
    before = product_state()

    with pytest.raises(IntegrityError), transaction.atomic():
        services.product_create(
            name="Other", sku="TAKEN", price=Decimal("1.00"), category=existing.category
        )

    assert product_state() == before


def test_product_update_writes_only_the_changed_fields() -> None:
    product = ProductFactory(price=Decimal("10.00"), stock_quantity=5)
    other_category = CategoryFactory()

    services.product_update(
        product=product, price=Decimal("12.50"), stock_quantity=5, category=other_category
    )

    product.refresh_from_db()
    assert (product.price, product.stock_quantity, product.category_id) == (
        Decimal("12.50"),
        5,
        other_category.pk,
    )


def test_product_update_refuses_fields_that_are_not_editable() -> None:
    product = ProductFactory()
    before = product_state()

    with pytest.raises(ValueError, match="not editable"):
        services.product_update(product=product, review_count=99)

    assert product_state() == before


def test_product_delete_refuses_a_product_that_is_on_an_order() -> None:
    item = OrderItemFactory()
    before = product_state()

    with pytest.raises(ProtectedError), transaction.atomic():
        services.product_delete(product=item.product)

    assert product_state() == before
