"""The wishlist services: one wishlist per user, each product at most once."""

from __future__ import annotations

import pytest

from emporium.core.tests.factories import ProductFactory, UserFactory
from emporium.wishlists import services
from emporium.wishlists.models import Wishlist, WishlistItem

pytestmark = pytest.mark.django_db


def test_add_reports_whether_it_created() -> None:
    user = UserFactory()
    product = ProductFactory()

    first, first_created = services.wishlist_item_add(user=user, product=product)
    second, second_created = services.wishlist_item_add(user=user, product=product)

    assert (first_created, second_created) == (True, False)
    assert first.pk == second.pk
    assert services.wishlist_get_or_create(user=user).pk == first.wishlist_id
    assert Wishlist.objects.count() == 1


def test_get_or_create_makes_one_wishlist_per_user() -> None:
    user = UserFactory()

    first = services.wishlist_get_or_create(user=user)
    second = services.wishlist_get_or_create(user=user)

    assert first.pk == second.pk
    assert Wishlist.objects.filter(user=user).count() == 1


def test_remove_deletes_only_that_item() -> None:
    user = UserFactory()
    removed, _ = services.wishlist_item_add(user=user, product=ProductFactory())
    kept, _ = services.wishlist_item_add(user=user, product=ProductFactory())

    services.wishlist_item_remove(item=removed)

    assert list(WishlistItem.objects.values_list("pk", flat=True)) == [kept.pk]
