"""A customer's orders (``GET /api/orders/`` and ``/api/orders/<id>/``) answered in front of Django.

``core.gateway.LeanGateway`` calls these for a cookie-less GET with a valid
Bearer token of an active account (``request.user`` carries the account's
state, its permissions included). They answer a customer reading their own
orders, in one prepared statement each, and return None (DRF's path answers)
for everything else: an account that may see every order (``orders.view_order``:
support and admins), any query parameter (a cursor, a page size), an order that
is not the caller's or does not exist (DRF's 404), anything DRF would negotiate.

The columns are derived from ``OrderSerializer``'s and ``OrderItemSerializer``'s
fields, the order of the list and its keyset links from the selector's ordering
(``selectors.ORDER_LIST_ORDERING``) and ``KeysetPagination``'s cursor; each
order is written by ``serializers.order_representation``, the function the DRF
path and checkout render with, which a test holds to ``OrderSerializer``. Sealed
fields (the shipping address, the phone) are opened as their model field opens
them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

from emporium.core.db.prepared import fetch_prepared
from emporium.core.encryption import EncryptedTextField, unseal
from emporium.core.gateway import Access, Route, exact_route, json_answer, json_read
from emporium.core.pagination import KeysetPagination, cursor_token
from emporium.core.representation import order_by_sql
from emporium.orders.models import Order, OrderItem
from emporium.orders.selectors import ORDER_LIST_ORDERING
from emporium.orders.serializers import (
    OrderItemSerializer,
    OrderSerializer,
    order_representation,
)

_SEE_ALL = "orders.view_order"  # as selectors.order_list_for_user decides


def _model_fields(model: Any, names: Sequence[str]) -> list[Any]:
    return [model._meta.get_field(name) for name in names if name not in ("items", "line_total")]


_ORDER_FIELDS = _model_fields(Order, OrderSerializer.Meta.fields)
_ITEM_FIELDS = _model_fields(OrderItem, OrderItemSerializer.Meta.fields)
# What order_representation reads: the model's attribute names ("pk" for the key).
_ORDER_ATTRS = ["pk" if field.primary_key else field.attname for field in _ORDER_FIELDS]
_ITEM_ATTRS = ["pk" if field.primary_key else field.attname for field in _ITEM_FIELDS]
_SEALED = [
    (index, field)
    for index, field in enumerate(_ORDER_FIELDS)
    if isinstance(field, EncryptedTextField)
]
_ROW_ID = Order._meta.get_field("row_uuid").column


def _order_by(alias: str) -> str:
    return order_by_sql(Order, ORDER_LIST_ORDERING, alias=alias)


_SELECT = (
    "SELECT "
    + ", ".join(f"o.{field.column}" for field in _ORDER_FIELDS)
    + f", o.{_ROW_ID}, "
    + ", ".join(f"i.{field.column}" for field in _ITEM_FIELDS)
)
_ORDERS, _ITEMS = Order._meta.db_table, OrderItem._meta.db_table
_PAGE = KeysetPagination.page_size
# The first page and one row more (whether there is a next page), with all their lines.
_LIST_SQL = (
    f"{_SELECT} FROM (SELECT * FROM {_ORDERS} WHERE user_id = %s"  # noqa: S608 - model names
    f" ORDER BY {_order_by(_ORDERS)} LIMIT {_PAGE + 1}) o"
    f" LEFT JOIN {_ITEMS} i ON i.order_id = o.id ORDER BY {_order_by('o')}, i.id"
)
_DETAIL_SQL = (
    f"{_SELECT} FROM {_ORDERS} o LEFT JOIN {_ITEMS} i ON i.order_id = o.id"
    " WHERE o.id = %s AND o.user_id = %s ORDER BY i.id"
)
_ITEM_AT = len(_ORDER_FIELDS) + 1
_KEY_AT = _ORDER_ATTRS.index("pk")


class _Item(SimpleNamespace):
    @property
    def line_total(self) -> Any:  # as OrderItem.line_total
        return self.price * self.quantity


def _orders(rows: Sequence[Sequence[Any]]) -> list[tuple[SimpleNamespace, list[_Item]]]:
    """The rows grouped by order, in their order, each order's values opened."""
    grouped: list[tuple[SimpleNamespace, list[_Item]]] = []
    current = None
    for row in rows:
        if current is None or row[_KEY_AT] != current.pk:
            values = list(row[: len(_ORDER_FIELDS)])
            row_id = str(row[len(_ORDER_FIELDS)])
            for index, field in _SEALED:
                if values[index] is not None:
                    values[index] = field.decode(
                        unseal(
                            values[index], table=_ORDERS, column=str(field.column), row_id=row_id
                        )
                    )
            current = SimpleNamespace(**dict(zip(_ORDER_ATTRS, values, strict=True)))
            grouped.append((current, []))
        if row[_ITEM_AT] is not None:
            grouped[-1][1].append(_Item(**dict(zip(_ITEM_ATTRS, row[_ITEM_AT:], strict=True))))
    return grouped


def _own_orders_only(request: HttpRequest) -> bool:
    return json_read(request) and not request.user.has_perm(_SEE_ALL)


def order_list(request: HttpRequest) -> HttpResponse | None:
    """The first page of the caller's own orders, or None for DRF's path."""
    if request.GET or not _own_orders_only(request):
        return None
    orders = _orders(fetch_prepared(_LIST_SQL, [request.user.pk]))
    page = orders[:_PAGE]
    zone = timezone.get_current_timezone()
    next_link = None
    if len(orders) > _PAGE:
        last = page[-1][0]
        # As KeysetPagination._link writes it for a request without parameters.
        position = [
            last.pk if name.lstrip("-") in ("id", "pk") else getattr(last, name.lstrip("-"))
            for name in ORDER_LIST_ORDERING
        ]
        token = cursor_token(ORDER_LIST_ORDERING, position, forward=True)
        next_link = request.build_absolute_uri(
            f"{request.path}?{urlencode([(KeysetPagination.cursor_query_param, token)])}"
        )
    return json_answer(
        {
            "next": next_link,
            "previous": None,
            "results": [order_representation(order, items, zone=zone) for order, items in page],
        }
    )


def order_detail(request: HttpRequest, order_id: str) -> HttpResponse | None:
    """One of the caller's own orders, or None for DRF's path (its 404 for any other)."""
    if not _own_orders_only(request):
        return None
    orders = _orders(fetch_prepared(_DETAIL_SQL, [int(order_id), request.user.pk]))
    if not orders:
        return None
    order, items = orders[0]
    return json_answer(order_representation(order, items))


def gateway_routes() -> list[Route]:
    list_path = reverse("order-list")
    return [
        exact_route(list_path, order_list, access=Access.SIGNED_IN),
        Route(
            re.compile(re.escape(list_path) + r"(?P<order_id>[1-9][0-9]{0,17})/"),
            order_detail,
            reverse("order-detail", args=[1]),
            access=Access.SIGNED_IN,
        ),
    ]
