"""The signed-in cart read (``GET /api/cart/``) answered in front of Django.

``core.gateway.LeanGateway`` calls :data:`cart` for a cookie-less GET with a
valid Bearer token of an active account. It is ``core.user_lists``' read of a
user's list: the cart, its lines (in ``selectors.CART_ITEM_ORDERING``) and
their products in one prepared statement, the columns and their rendering
derived from the serializers' fields (``serializers.CART_SHAPES``), the
document assembled by ``serializers.cart_representation``, the function DRF's
path renders with too, which a test holds to ``CartSerializer``.
"""

from __future__ import annotations

from django.urls import reverse

from emporium.carts.selectors import CART_ITEM_ORDERING
from emporium.carts.serializers import CART_SHAPES, cart_representation
from emporium.core.gateway import Access, Route, exact_route
from emporium.core.user_lists import user_list_read

cart = user_list_read(CART_SHAPES, ordering=CART_ITEM_ORDERING, representation=cart_representation)


def gateway_routes() -> list[Route]:
    return [exact_route(reverse("cart"), cart, access=Access.SIGNED_IN)]
