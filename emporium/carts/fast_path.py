"""The signed-in cart read (``GET /api/cart/``) answered in front of Django.

``core.gateway.LeanGateway`` calls :func:`cart` for a cookie-less GET with a
valid Bearer token of an active account (``request.user`` is set from the
token). The cart, its lines and their products are one prepared statement; the
columns and their rendering are derived from the serializers' fields
(``serializers.CART_SHAPES``) and the document is assembled by
``serializers.cart_representation``, the function DRF's path renders with too,
which a test holds to ``CartSerializer``. A caller without a cart yet (DRF's
path creates it) and anything DRF would negotiate are left to DRF's path.
"""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from emporium.carts.models import CartItem, ShoppingCart
from emporium.carts.serializers import CART_SHAPES, cart_representation
from emporium.catalog.models import Product
from emporium.core.db.prepared import fetch_prepared
from emporium.core.gateway import Access, Route, json_answer, json_read

_CART, _ITEM, _PRODUCT = CART_SHAPES
_CART_SQL = (
    f"SELECT {_CART.select}, {_ITEM.select}, {_PRODUCT.select}"  # noqa: S608 - model names
    f" FROM {ShoppingCart._meta.db_table} c"
    f" LEFT JOIN {CartItem._meta.db_table} i ON i.cart_id = c.id"
    f" LEFT JOIN {Product._meta.db_table} p ON p.id = i.product_id"
    " WHERE c.user_id = %s ORDER BY i.id"
)


def cart(request: HttpRequest) -> HttpResponse | None:
    if not json_read(request):
        return None
    rows = fetch_prepared(_CART_SQL, [request.user.pk])
    if not rows:
        return None  # no cart yet: DRF's path creates it
    item_at, product_at = len(_CART.names), len(_CART.names) + len(_ITEM.names)
    lines = [
        (_ITEM.render(row, item_at), _PRODUCT.render(row, product_at))
        for row in rows
        if row[item_at] is not None
    ]
    return json_answer(cart_representation(_CART.render(rows[0]), lines))


def gateway_routes() -> list[Route]:
    path = reverse("cart")
    return [Route(re.compile(re.escape(path)), cart, path, access=Access.SIGNED_IN)]
