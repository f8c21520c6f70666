"""The signed-in wishlist read (``GET /api/wishlist/``) answered in front of Django.

As ``carts.fast_path``, ``core.user_lists``' read of a user's list: the
wishlist, its lines (newest first, ``selectors.WISHLIST_ITEM_ORDERING``) and
their products in one prepared statement, the columns and their rendering
derived from the serializers' fields (``serializers.WISHLIST_SHAPES``), the
document assembled by ``serializers.wishlist_representation``, which a test
holds to ``WishlistSerializer``.
"""

from __future__ import annotations

from django.urls import reverse

from emporium.core.gateway import Access, Route, exact_route
from emporium.core.user_lists import user_list_read
from emporium.wishlists.selectors import WISHLIST_ITEM_ORDERING
from emporium.wishlists.serializers import WISHLIST_SHAPES, wishlist_representation

wishlist = user_list_read(
    WISHLIST_SHAPES, ordering=WISHLIST_ITEM_ORDERING, representation=wishlist_representation
)


def gateway_routes() -> list[Route]:
    return [exact_route(reverse("wishlist"), wishlist, access=Access.SIGNED_IN)]
