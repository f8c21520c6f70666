"""Anonymous product reads answered before DRF's dispatch: the lean read path.

``ProductViewSet.dispatch`` calls these first for ``GET /api/products/`` and
``GET /api/products/<id>/``. They answer a request only when nothing DRF does
could change the answer, and return None otherwise, so the request takes the
DRF path, which renders the same representation through the ORM and the
paginator (docs/adr/0016-lean-catalog-reads.md):

- the request is an anonymous GET (no ``Authorization`` header: a bad token is
  a 401 on the DRF path), asks for JSON, and has no ``format`` parameter;
- every parameter the list reads is in its plain spelling (``in_stock=true``,
  ``min_price=12.50``, a valid cursor, ...). Anything else, including every
  invalid value, goes to the DRF path, which answers it or refuses it in the one
  error shape. ``q`` (a name filter for small result sets) also goes there;
- the product or category exists (a 404 or an unknown category is DRF's).

A cached entry is served as it is; a missing one is built from rows
(``selectors.product_page_rows``, ``selectors.product_row``) through
``serializers.product_row_representation`` and rendered by DRF's
``JSONRenderer``, under the same key and with the same stampede protection as
the DRF path, so both paths share entries and their bytes are the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import msgspec
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from rest_framework.renderers import JSONRenderer

from emporium.catalog import caching, selectors
from emporium.catalog.models import Product
from emporium.catalog.serializers import ProductFilterSerializer, product_row_representation
from emporium.core.cache import conditional_response, versioned_fetch
from emporium.core.gateway import Route
from emporium.core.pagination import (
    InvalidCursor,
    KeysetPagination,
    cursor_position,
    cursor_token,
)
from emporium.core.selectors import id_in_range

# Accept headers DRF's negotiation answers with JSON (the only renderer); any
# other takes the DRF path (a 406 there).
_JSON_ACCEPTS = frozenset({"", "*/*", "application/json", "application/*"})

CURSOR = KeysetPagination.cursor_query_param
PAGE_SIZE = KeysetPagination.page_size_query_param
# The parameters the list reads, as the DRF path keys its cache entries.
LIST_PARAMS = (*ProductFilterSerializer().fields, CURSOR, PAGE_SIZE)
# The plain spellings taken here; DRF accepts more ("True", "1", "12.5e1", ...).
_ID = re.compile(r"[1-9][0-9]{0,17}")
_PRICE = re.compile(r"(?:0|[1-9][0-9]{0,9})(?:\.[0-9]{1,2})?")
_IN_STOCK = {"true": True, "false": False}
_renderer = JSONRenderer()


class _TakeDrfPath(Exception):
    """Raised while building a page that the DRF path must answer (it raises the 4xx)."""


def _eligible(request: HttpRequest) -> bool:
    if request.method != "GET" or "HTTP_AUTHORIZATION" in request.META or "format" in request.GET:
        return False
    return request.META.get("HTTP_ACCEPT", "").strip() in _JSON_ACCEPTS


def _answer(
    request: HttpRequest, *, key: str, namespaces: Sequence[str], render: Callable[[], bytes]
) -> HttpResponse | None:
    try:
        lookup = versioned_fetch(
            key=key, namespaces=namespaces, compute=render, policy=caching.cache_policy()
        )
    except _TakeDrfPath:
        return None
    response = conditional_response(
        request,
        lookup.entry,
        content_type=JSONRenderer.media_type,
        cache_control=caching.cache_control(),
    )
    # What session authentication adds on the DRF path.
    patch_vary_headers(response, ("Cookie",))
    return response


@dataclass(frozen=True)
class ListQuery:
    category_id: int | None
    min_price: Decimal | None
    max_price: Decimal | None
    in_stock: bool | None
    ordering: str
    position: list[Any] | None
    forward: bool
    size: int


def list_query(params: dict[str, str]) -> ListQuery | None:
    """The list's parameters when all are in their plain spelling and valid, else None."""
    if params.get("q") is not None:
        return None
    category_id = min_price = max_price = None
    if (raw := params.get("category")) is not None:
        if not _ID.fullmatch(raw):
            return None
        category_id = int(raw)
    if (raw := params.get("min_price")) is not None:
        if not _PRICE.fullmatch(raw):
            return None
        min_price = Decimal(raw)
    if (raw := params.get("max_price")) is not None:
        if not _PRICE.fullmatch(raw):
            return None
        max_price = Decimal(raw)
    if min_price is not None and max_price is not None and min_price > max_price:
        return None
    in_stock = None
    if (raw := params.get("in_stock")) is not None:
        if raw not in _IN_STOCK:
            return None
        in_stock = _IN_STOCK[raw]
    ordering = params.get("ordering", selectors.DEFAULT_PRODUCT_ORDERING)
    if ordering not in selectors.PRODUCT_ORDERINGS:
        return None
    size = KeysetPagination.page_size
    if (raw := params.get(PAGE_SIZE)) is not None:
        size = int(raw) if _ID.fullmatch(raw) else 0
        if not 1 <= size <= KeysetPagination.max_page_size:
            return None  # the DRF path answers with its 400
    position, forward = None, True
    if raw := params.get(CURSOR):
        try:
            position, forward = cursor_position(
                raw, ordering=selectors.PRODUCT_ORDERINGS[ordering], model=Product
            )
        except InvalidCursor:
            return None
    return ListQuery(category_id, min_price, max_price, in_stock, ordering, position, forward, size)


def _rendered() -> bool:
    """Whether PostgreSQL writes the rows (it writes times in UTC only)."""
    return connection.vendor == "postgresql" and timezone.get_current_timezone_name() == "UTC"


_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json_document(parts: list[str]) -> bytes:
    """What JSONRenderer makes of a document written as ``parts`` (U+2028/9 escaped)."""
    text = "".join(parts)
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode()


class _HasFloat(Exception):
    """Raised while decoding attributes that hold a non-integer number."""


def _refuse_float(text: str) -> Any:
    raise _HasFloat(text)


# Without floats, msgspec writes JSON exactly as the json module does with
# JSONRenderer's options (the same escapes, integers of any size, no spaces);
# it writes floats differently (1e16 where json writes 1e+16), so those
# attributes are written by the json module.
_decoder = msgspec.json.Decoder(float_hook=_refuse_float)
_compact = msgspec.json.Encoder()


def _attributes_text(stored: str) -> str:
    """Stored attributes (JSON text) as JSONRenderer writes the dict they parse to."""
    if stored == "{}":
        return stored
    try:
        return _compact.encode(_decoder.decode(stored)).decode()
    except _HasFloat:
        value = msgspec.json.decode(stored)
    except msgspec.MsgspecError:  # what msgspec refuses (1e400, lone surrogates), json reads
        value = json.loads(stored)
    return _encoder.encode(value)


# What urlencode() leaves as it is: the lean path's parameters are validated
# plain spellings and cursors (URL-safe base64), so they normally all are.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")


def _query_string(items: list[tuple[str, str]]) -> str:
    if all(_URL_SAFE.fullmatch(key) and _URL_SAFE.fullmatch(value) for key, value in items):
        return "&".join(f"{key}={value}" for key, value in items)
    return urlencode(items)


def _list_body(request: HttpRequest, query: ListQuery, params: dict[str, str]) -> bytes:
    category_ids = None
    if query.category_id is not None:
        category_ids = selectors.category_subtree_id_list(category_id=query.category_id)
        if not category_ids:
            raise _TakeDrfPath()  # an unknown category: a 400 from the DRF path
    rendered = _rendered()
    page = selectors.product_page_rows(
        category_ids=category_ids,
        min_price=query.min_price,
        max_price=query.max_price,
        in_stock=query.in_stock,
        ordering=query.ordering,
        position=query.position,
        forward=query.forward,
        size=query.size,
        rendered=rendered,
    )
    ordering = selectors.PRODUCT_ORDERINGS[query.ordering]
    indexes = [selectors.PRODUCT_ROW_INDEX[field.lstrip("-")] for field in ordering]

    def link(row: selectors.ProductRow, *, forward: bool) -> str:
        # As KeysetPagination._link builds it from the same parameters.
        if rendered:
            position = selectors.rendered_position(row, ordering)
        else:
            position = [row[i] for i in indexes]
        linked = dict(params)
        linked[CURSOR] = cursor_token(ordering, position, forward=forward)
        query_string = _query_string(sorted(linked.items()))
        return request.build_absolute_uri(f"{request.path}?{query_string}")

    rows = page.rows
    next_link = link(rows[-1], forward=True) if page.has_next and rows else None
    previous_link = link(rows[0], forward=False) if page.has_previous and rows else None
    if not rendered:
        zone = timezone.get_current_timezone()
        data = {
            "next": next_link,
            "previous": previous_link,
            "results": [product_row_representation(row, zone=zone) for row in rows],
        }
        return _renderer.render(data)
    results = ",".join(head + _attributes_text(stored) + tail for head, stored, tail, *_ in rows)
    return _json_document(
        [
            '{"next":',
            _encoder.encode(next_link),
            ',"previous":',
            _encoder.encode(previous_link),
            ',"results":[',
            results,
            "]}",
        ]
    )


def product_list(request: HttpRequest) -> HttpResponse | None:
    """The list page for an anonymous JSON GET in plain spelling, or None for the DRF path."""
    if not _eligible(request):
        return None
    params = caching.known_params(request.GET, LIST_PARAMS)
    query = list_query(params)
    if query is None:
        return None
    key = caching.list_key(
        "products.list", base_uri=request.build_absolute_uri(request.path), params=params
    )
    return _answer(
        request,
        key=key,
        namespaces=caching.product_list_namespaces(),
        render=lambda: _list_body(request, query, params),
    )


def _detail_body(product_id: int) -> bytes:
    rendered = _rendered()
    row = selectors.product_row(product_id=product_id, rendered=rendered)
    if row is None:
        raise _TakeDrfPath()  # a 404 from the DRF path
    if not rendered:
        return _renderer.render(product_row_representation(row))
    head, stored, tail, *_ = row
    return _json_document([head, _attributes_text(stored), tail])


def product_detail(request: HttpRequest, product_id: int) -> HttpResponse | None:
    """One product for an anonymous JSON GET, or None for the DRF path.

    An id no row can have (past bigint) is the DRF path's 404, never a query here.
    """
    if not _eligible(request) or not id_in_range(product_id):
        return None
    return _answer(
        request,
        key=caching.detail_key("products.detail", product_id),
        namespaces=caching.product_detail_namespaces(product_id),
        render=lambda: _detail_body(product_id),
    )


def _detail_route(request: HttpRequest, product_id: str) -> HttpResponse | None:
    return product_detail(request, int(product_id))


def gateway_routes() -> list[Route]:
    """The list and the detail, for ``core.gateway.LeanGateway`` in front of Django.

    The detail takes ids in their plain spelling only; "0042" is Django's to answer.
    """
    list_path = reverse("product-list")
    return [
        Route(re.compile(re.escape(list_path)), product_list, list_path),
        Route(
            re.compile(re.escape(list_path) + r"(?P<product_id>[1-9][0-9]{0,17})/"),
            _detail_route,
            reverse("product-detail", args=[1]),
        ),
    ]
