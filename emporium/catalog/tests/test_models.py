"""The database itself guards the catalog's invariants, whatever Python skips."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from emporium.catalog.models import Category, Product
from emporium.catalog.tests.support import category_tree_state, product_state
from emporium.core.tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db


def test_a_category_cannot_be_its_own_parent() -> None:
    category = CategoryFactory()
    before = category_tree_state()

    with pytest.raises(IntegrityError), transaction.atomic():
        Category.objects.filter(pk=category.pk).update(parent=category.pk)

    assert category_tree_state() == before


def test_sibling_names_are_unique_below_a_parent_and_among_roots() -> None:
    root = CategoryFactory(name="Root")
    CategoryFactory(name="Child", parent=root)
    before = category_tree_state()

    with pytest.raises(IntegrityError), transaction.atomic():
        Category.objects.create(name="Child", parent=root, path="x/", depth=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Category.objects.create(name="Root", parent=None, path="y/", depth=0)

    assert category_tree_state() == before


@pytest.mark.parametrize(
    "change",
    [
        {"price": Decimal("-0.01")},
        {"stock_quantity": -1},
        {"review_count": 1, "rating_total": 0},  # a rating is at least 1
        {"review_count": 1, "rating_total": 6},  # and at most 5
        {"review_count": 0, "rating_total": 3},
    ],
    ids=["negative-price", "negative-stock", "total-below-count", "total-above-5x", "no-count"],
)
def test_product_check_constraints_refuse_an_update_that_skips_validation(
    change: dict[str, Any],
) -> None:
    product = ProductFactory(price=Decimal("10.00"), stock_quantity=3)
    before = product_state()

    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(pk=product.pk).update(**change)

    assert product_state() == before


@pytest.mark.parametrize(("field", "value"), [("price", Decimal("-5.00")), ("stock_quantity", -2)])
def test_product_check_constraints_refuse_a_plain_save(field: str, value: Any) -> None:
    product = ProductFactory(price=Decimal("10.00"), stock_quantity=3)
    before = product_state()

    setattr(product, field, value)
    with pytest.raises(IntegrityError), transaction.atomic():
        product.save()  # save() does not run full_clean: only the database can refuse

    assert product_state() == before


def test_product_sku_is_unique_in_the_database() -> None:
    existing = ProductFactory(sku="ONE")
    other = ProductFactory(sku="TWO", category=existing.category)
    before = product_state()

    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(pk=other.pk).update(sku="ONE")

    assert product_state() == before


def test_rating_average_is_rounded_to_two_places_and_none_without_reviews() -> None:
    product = ProductFactory()
    assert product.rating_average is None

    product.review_count, product.rating_total = 3, 5
    assert product.rating_average == Decimal("1.67")

    product.review_count, product.rating_total = 2, 7
    assert product.rating_average == Decimal("3.50")
