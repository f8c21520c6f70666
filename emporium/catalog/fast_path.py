"""Product reads answered in front of Django: the lean read path.

``core.gateway.LeanGateway`` (wired in ``config.wsgi``) calls these for a
cookie-less ``GET /api/products/`` or ``GET /api/products/<id>/``, anonymous or
with a valid Bearer token: a product's representation does not depend on who
asks (docs/adr/0020-lean-gateway-and-rendered-rows.md). They answer a request only
when nothing DRF does could change the answer, and return None otherwise, so
Django's path, which renders the same representation through the ORM, answers
it:

- it asks for JSON and has no ``format`` parameter (content negotiation is DRF's);
- its parameters parse (``list_query.product_list_query``, the parser the DRF
  view uses): an invalid one is DRF's 400 to give. ``q`` (a name filter for
  small result sets) is also left to DRF;
- the product or category exists (a 404 or an unknown category is DRF's);
- PostgreSQL writes the rows (``selectors.product_page_rows`` through the
  generated ``emporium_product_rows``), which it does in UTC only: on another
  database, or another current time zone, Django's path answers.

A cached entry is served as it is; a missing one is built under the same key
and with the same stampede protection as the DRF path, so both paths share
entries and their bytes are the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import msgspec
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer

from emporium.catalog import caching, selectors
from emporium.catalog.list_query import CURSOR, LIST_PARAMS, ListQuery, product_list_query
from emporium.catalog.models import PRODUCT_ORDERINGS
from emporium.catalog.representation import OBJECT_COLUMNS, RENDERED_COLUMNS, rendered_position
from emporium.core.cache import conditional_response, versioned_fetch
from emporium.core.errors import InvalidInput
from emporium.core.gateway import Access, Route, json_read
from emporium.core.pagination import cursor_token
from emporium.core.selectors import id_in_range


class _TakeDrfPath(Exception):
    """Raised while building a page that the DRF path must answer (it raises the 4xx)."""


def _eligible(request: HttpRequest) -> bool:
    return request.method == "GET" and json_read(request)


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
    if "HTTP_AUTHORIZATION" not in request.META:
        # What session authentication adds on the DRF path (a token's request never
        # reads the session, so it gets no Vary there either).
        patch_vary_headers(response, ("Cookie",))
    return response


def _rendered() -> bool:
    """Whether PostgreSQL writes the rows (it writes times in UTC only).

    Asked only to build an entry: a cached one holds the bytes either path
    writes, so it is served whatever the database.
    """
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
# it writes floats differently (1e16 where json writes 1e+16), so objects
# holding floats are written by the json module.
_decoder = msgspec.json.Decoder(float_hook=_refuse_float)
_compact = msgspec.json.Encoder()


def _object_text(stored: str) -> str:
    """A stored object (JSON text) as JSONRenderer writes the dict it parses to."""
    if stored == "{}":
        return stored
    try:
        return _compact.encode(_decoder.decode(stored)).decode()
    except _HasFloat:
        value = msgspec.json.decode(stored)
    except msgspec.MsgspecError:  # what msgspec refuses (1e400, lone surrogates), json reads
        value = json.loads(stored)
    return _encoder.encode(value)


# What urlencode() leaves as it is: parameters in their plain spelling and
# cursors (URL-safe base64) are, so most links need no quoting.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")


def _query_string(items: list[tuple[str, str]]) -> str:
    if all(_URL_SAFE.fullmatch(key) and _URL_SAFE.fullmatch(value) for key, value in items):
        return "&".join(f"{key}={value}" for key, value in items)
    return urlencode(items)


# The columns of a rendered row that make up the product's JSON, in order, and
# whether each is a stored object (written here) or text PostgreSQL wrote. Read
# by their place in the row, derived from the names (20 rows a page, three
# pieces each: an attribute lookup per piece was a tenth of an uncached page).
_PIECES = tuple(
    (RENDERED_COLUMNS.index(name), name in OBJECT_COLUMNS)
    for name in RENDERED_COLUMNS
    if not name.startswith("cursor_")
)


def _product_text(row: Sequence[Any]) -> str:
    return "".join(
        [_object_text(row[index]) if stored else row[index] for index, stored in _PIECES]
    )


def _list_body(request: HttpRequest, query: ListQuery, params: dict[str, str]) -> bytes:
    if not _rendered():
        raise _TakeDrfPath()
    category_ids = None
    if query.category_id is not None:
        category_ids = selectors.category_subtree_id_list(category_id=query.category_id)
        if not category_ids:
            raise _TakeDrfPath()  # an unknown category: a 400 from the DRF path
    page = selectors.product_page_rows(
        category_ids=category_ids,
        min_price=query.min_price,
        max_price=query.max_price,
        in_stock=query.in_stock,
        ordering=query.ordering,
        position=query.position,
        forward=query.forward,
        size=query.size,
    )
    ordering = PRODUCT_ORDERINGS[query.ordering]

    def link(row: Any, *, forward: bool) -> str:
        # As KeysetPagination._link builds it from the same parameters.
        linked = dict(params)
        linked[CURSOR] = cursor_token(ordering, rendered_position(row, ordering), forward=forward)
        query_string = _query_string(sorted(linked.items()))
        return request.build_absolute_uri(f"{request.path}?{query_string}")

    rows = page.rows
    next_link = link(rows[-1], forward=True) if page.has_next and rows else None
    previous_link = link(rows[0], forward=False) if page.has_previous and rows else None
    return _json_document(
        [
            '{"next":',
            _encoder.encode(next_link),
            ',"previous":',
            _encoder.encode(previous_link),
            ',"results":[',
            ",".join(_product_text(row) for row in rows),
            "]}",
        ]
    )


def product_list(request: HttpRequest) -> HttpResponse | None:
    """The list page for a JSON GET, or None for the DRF path."""
    if not _eligible(request):
        return None
    try:
        query = product_list_query(request.GET)
    except (ValidationError, InvalidInput):
        return None  # the DRF path answers with its 400
    if query.name_query is not None:
        return None
    params = caching.known_params(request.GET, LIST_PARAMS)
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
    if not _rendered():
        raise _TakeDrfPath()
    row = selectors.product_row(product_id=product_id)
    if row is None:
        raise _TakeDrfPath()  # a 404 from the DRF path
    return _json_document([_product_text(row)])


def product_detail(request: HttpRequest, product_id: int) -> HttpResponse | None:
    """One product for a JSON GET, or None for the DRF path.

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

    Both answer anonymous and signed-in reads alike. The detail takes ids in their
    plain spelling only; "0042" is Django's to answer.
    """
    list_path = reverse("product-list")
    return [
        Route(re.compile(re.escape(list_path)), product_list, list_path, access=Access.ANYONE),
        Route(
            re.compile(re.escape(list_path) + r"(?P<product_id>[1-9][0-9]{0,17})/"),
            _detail_route,
            reverse("product-detail", args=[1]),
            access=Access.ANYONE,
        ),
    ]
