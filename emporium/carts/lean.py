"""Adding to the cart and changing a quantity, for a Bearer token, without DRF's dispatch.

The services (``services.cart_item_add``, ``cart_item_set_quantity``) take a
transaction, a row lock, a re-read of the product and up to seven statements;
DRF adds its request wrapping, the serializers and a user lookup. Here each write
is one prepared statement that decides and writes at once:

- adding is ``INSERT … ON CONFLICT (cart, product) DO UPDATE`` with the stock
  rule in both branches (the line's new quantity may not exceed the product's
  stock), so of any number of racing adds each one is applied to the locked,
  newest line or refused;
- changing a quantity is one ``UPDATE`` of the caller's own line, under the
  same rule.

The answer is the line as ``CartItemSerializer`` writes it
(``serializers.cart_line_representation`` over ``CART_SHAPES``, tests hold both
equal). Whatever else DRF would answer differently takes DRF's path: no valid
token (401), a throttled caller (429), a body that is not exactly a valid JSON
object of the expected fields (400), no cart yet (the service creates it), a
product or line that does not exist (404) or not enough stock (409, with its
details).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

from django.db import connection
from django.http import HttpRequest, HttpResponse
from rest_framework import status
from rest_framework.fields import IntegerField
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from emporium.accounts.authentication import bearer_user
from emporium.carts.models import CartItem, ShoppingCart
from emporium.carts.serializers import (
    CART_SHAPES,
    CartItemCreateSerializer,
    CartItemUpdateSerializer,
    cart_line_representation,
)
from emporium.catalog.models import Product
from emporium.core.db.prepared import fetch_prepared
from emporium.core.parsers import JSONTooDeep, json_loads
from emporium.core.selectors import id_in_range

_, _ITEM, _PRODUCT = CART_SHAPES
_ITEMS, _PRODUCTS = CartItem._meta.db_table, Product._meta.db_table
_CARTS = ShoppingCart._meta.db_table
_LINE = (
    f"SELECT {_ITEM.select}, {_PRODUCT.select}"  # noqa: S608 - model names
    f" FROM written i JOIN {_PRODUCTS} p ON p.id = i.product_id"
)
_ADD_SQL = (
    f"WITH cart AS (SELECT id FROM {_CARTS} WHERE user_id = %(user)s),"  # noqa: S608 - model names
    f" written AS (INSERT INTO {_ITEMS} AS line"
    " (cart_id, product_id, quantity, created_at, updated_at)"
    " SELECT cart.id, p.id, %(quantity)s, now(), now()"
    f" FROM cart JOIN {_PRODUCTS} p ON p.id = %(product)s"
    " WHERE p.stock_quantity >= %(quantity)s"
    " ON CONFLICT (cart_id, product_id) DO UPDATE"
    " SET quantity = line.quantity + EXCLUDED.quantity, updated_at = EXCLUDED.updated_at"
    f" WHERE line.quantity + EXCLUDED.quantity <= (SELECT stock_quantity FROM {_PRODUCTS}"
    " WHERE id = EXCLUDED.product_id)"
    " RETURNING *) " + _LINE
)
_SET_SQL = (
    f"WITH written AS (UPDATE {_ITEMS} AS line SET quantity = %(quantity)s, updated_at = now()"  # noqa: S608 - model names
    f" FROM {_CARTS} c, {_PRODUCTS} p"
    " WHERE line.id = %(line)s AND c.id = line.cart_id AND c.user_id = %(user)s"
    " AND p.id = line.product_id AND p.stock_quantity >= %(quantity)s"
    " RETURNING line.*) " + _LINE
)
_renderer = JSONRenderer()


def _body(request: HttpRequest, fields: set[str]) -> dict[str, Any] | None:
    """The JSON object of the body when it has only ``fields`` and only integers; else None.

    Only on PostgreSQL (the statements are its dialect); elsewhere DRF's path answers.
    """
    if connection.vendor != "postgresql":
        return None
    if request.content_type != "application/json" or not request.body:
        return None
    try:
        data = json_loads(request.body)
    except (ValueError, JSONTooDeep):
        return None
    if not isinstance(data, dict) or not set(data) <= fields:
        return None
    if not all(type(value) is int for value in data.values()):
        return None
    return data


def _within(field: IntegerField, value: int) -> bool:
    """Whether ``value`` passes the serializer field's bounds (DRF's 400 otherwise)."""
    low, high = field.min_value, field.max_value
    return (low is None or value >= low) and (high is None or value <= high)


def _caller(request: HttpRequest, view: APIView) -> int | None:
    """The Bearer token's active account, if this view's throttles let its write through."""
    user = bearer_user(request)
    if user is None:
        return None
    caller = SimpleNamespace(method=request.method, META=request.META, user=user)
    for throttle in view.get_throttles():
        if not throttle.allow_request(cast(Request, caller), view):
            return None
    return user.pk


def _answer(rows: list[tuple[Any, ...]], status_code: int) -> HttpResponse | None:
    if not rows:
        return None
    line = _ITEM.render(rows[0])
    product = _PRODUCT.render(rows[0], len(_ITEM.names))
    return HttpResponse(
        _renderer.render(cart_line_representation(line, product)),
        status=status_code,
        content_type=_renderer.media_type,
    )


def cart_item_add(request: HttpRequest, view: APIView) -> HttpResponse | None:
    """``POST /api/cart/items/`` in one statement, or None for DRF's path."""
    data = _body(request, {"product", "quantity"})
    if data is None or "product" not in data or not id_in_range(data["product"]):
        return None
    checked = cast(IntegerField, CartItemCreateSerializer().fields["quantity"])
    quantity = data.get("quantity", checked.default)
    if not isinstance(quantity, int) or not _within(checked, quantity):
        return None
    user_id = _caller(request, view)
    if user_id is None:
        return None
    params = {"user": user_id, "product": data["product"], "quantity": quantity}
    rows = fetch_prepared(_ADD_SQL, cast(Sequence[Any], params))  # psycopg takes names too
    return _answer(rows, status.HTTP_201_CREATED)


def cart_item_set_quantity(
    request: HttpRequest, view: APIView, line_id: int
) -> HttpResponse | None:
    """``PATCH /api/cart/items/<id>/`` with a quantity, in one statement, or None for DRF's path."""
    data = _body(request, {"quantity"})
    if data is None or "quantity" not in data or not id_in_range(line_id):
        return None
    checked = cast(IntegerField, CartItemUpdateSerializer().fields["quantity"])
    if not _within(checked, data["quantity"]):
        return None
    user_id = _caller(request, view)
    if user_id is None:
        return None
    params = {"user": user_id, "line": line_id, "quantity": data["quantity"]}
    rows = fetch_prepared(_SET_SQL, cast(Sequence[Any], params))  # psycopg takes names too
    return _answer(rows, status.HTTP_200_OK)
