"""The signed-in wishlist read (``GET /api/wishlist/``) answered in front of Django.

As ``carts.fast_path``: one prepared statement for the wishlist, its lines and
their products, the columns and their rendering derived from the serializers'
fields (``serializers.WISHLIST_SHAPES``), the document assembled by
``serializers.wishlist_representation``, which a test holds to
``WishlistSerializer``. A caller without a wishlist yet (DRF's path creates it)
and anything DRF would negotiate are left to DRF's path.
"""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from emporium.catalog.models import Product
from emporium.core.db.prepared import fetch_prepared
from emporium.core.gateway import Access, Route, json_answer, json_read
from emporium.wishlists.models import Wishlist, WishlistItem
from emporium.wishlists.serializers import WISHLIST_SHAPES, wishlist_representation

_WISHLIST, _ITEM, _PRODUCT = WISHLIST_SHAPES
# The lines in the selector's order (selectors.wishlist_items: newest first).
_WISHLIST_SQL = (
    f"SELECT {_WISHLIST.select}, {_ITEM.select}, {_PRODUCT.select}"  # noqa: S608 - model names
    f" FROM {Wishlist._meta.db_table} w"
    f" LEFT JOIN {WishlistItem._meta.db_table} i ON i.wishlist_id = w.id"
    f" LEFT JOIN {Product._meta.db_table} p ON p.id = i.product_id"
    " WHERE w.user_id = %s ORDER BY i.created_at DESC, i.id DESC"
)


def wishlist(request: HttpRequest) -> HttpResponse | None:
    if not json_read(request):
        return None
    rows = fetch_prepared(_WISHLIST_SQL, [request.user.pk])
    if not rows:
        return None  # no wishlist yet: DRF's path creates it
    item_at, product_at = len(_WISHLIST.names), len(_WISHLIST.names) + len(_ITEM.names)
    lines = [
        (_ITEM.render(row, item_at), _PRODUCT.render(row, product_at))
        for row in rows
        if row[item_at] is not None
    ]
    return json_answer(wishlist_representation(_WISHLIST.render(rows[0]), lines))


def gateway_routes() -> list[Route]:
    path = reverse("wishlist")
    return [Route(re.compile(re.escape(path)), wishlist, path, access=Access.SIGNED_IN)]
