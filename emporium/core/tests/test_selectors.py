"""get_or_not_found: one row of a queryset, or the API's 404."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import MultipleObjectsReturned

from emporium.accounts.models import User
from emporium.catalog.models import Product
from emporium.core.errors import NotFound
from emporium.core.selectors import get_or_not_found
from emporium.core.tests.factories import CategoryFactory, ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_returns_the_matching_row() -> None:
    user = UserFactory(username="alice")
    UserFactory(username="bob")

    found = get_or_not_found(User.objects.all(), pk=user.pk)

    assert found == user
    assert found.username == "alice"


def test_a_missing_row_is_not_found() -> None:
    user = UserFactory()

    with pytest.raises(NotFound) as caught:
        get_or_not_found(User.objects.all(), pk=user.pk + 1)

    assert (caught.value.status_code, caught.value.code, caught.value.message) == (
        404,
        "not_found",
        "Not found.",
    )
    assert caught.value.__suppress_context__ is True


def test_a_row_outside_the_queryset_looks_missing() -> None:
    category = CategoryFactory()
    hidden = ProductFactory(category=category, stock_quantity=0)
    ProductFactory(category=category, stock_quantity=3)

    with pytest.raises(NotFound):
        get_or_not_found(Product.objects.filter(stock_quantity__gt=0), pk=hidden.pk)


@pytest.mark.parametrize("lookup", [{"pk": "abc"}, {"pk": [1, 2]}, {"pk": {"a": 1}}, {"pk": ""}])
def test_an_unusable_lookup_value_is_not_found(lookup: dict[str, Any]) -> None:
    UserFactory()

    with pytest.raises(NotFound):
        get_or_not_found(User.objects.all(), **lookup)


def test_several_matches_are_a_programming_error_not_a_404() -> None:
    UserFactory(first_name="Same")
    UserFactory(first_name="Same")

    with pytest.raises(MultipleObjectsReturned):
        get_or_not_found(User.objects.all(), first_name="Same")


def test_lookups_can_span_relations() -> None:
    category = CategoryFactory(name="Tea")
    product = ProductFactory(category=category, sku="TEA-1")

    assert get_or_not_found(Product.objects.all(), category__name="Tea", sku="TEA-1") == product
