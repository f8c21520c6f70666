"""The product list's query parameters, parsed once for every read path.

:func:`product_list_query` turns a request's query parameters into one typed
:class:`ListQuery` (filters, ordering, page size, decoded cursor) or refuses
them with the 400 the API answers. The DRF view and the lean read path
(``fast_path``) both call it, so they accept and refuse exactly the same
inputs and read them as the same values.

The rules are ``serializers.ProductFilterSerializer``'s (DRF fields, which the
OpenAPI schema describes) and ``KeysetPagination``'s. The serializer costs more
than the read it guards on the lean path, so parameters in their plain
spelling (``category=12``, ``min_price=12.50``, ``in_stock=true``, an
ordering's name) are read here directly, as the serializer reads them; any
other spelling, and any invalid value, goes through the serializer.
``emporium/catalog/tests/test_list_query.py`` holds the two to the same results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from emporium.catalog.models import DEFAULT_PRODUCT_ORDERING, PRODUCT_ORDERINGS, Product
from emporium.catalog.serializers import ProductFilterSerializer
from emporium.core.pagination import KeysetPagination, cursor_position

CURSOR = KeysetPagination.cursor_query_param
PAGE_SIZE = KeysetPagination.page_size_query_param
FILTER_PARAMS = tuple(ProductFilterSerializer().fields)
# Every parameter the list reads: its pages are cached under these alone.
LIST_PARAMS = (*FILTER_PARAMS, CURSOR, PAGE_SIZE)

_ID = re.compile(r"[1-9][0-9]{0,17}")  # below 2**63: the serializer's max_value
_PRICE = re.compile(r"(?:0|[1-9][0-9]{0,9})(?:\.[0-9]{1,2})?")
_IN_STOCK = {"true": True, "false": False}
_CENTS = Decimal("0.01")


class QueryParams(Protocol):
    """A request's query parameters (a QueryDict): the last value of a repeated one."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def getlist(self, key: str, default: Any = None) -> list[Any]: ...

    def __contains__(self, key: object) -> bool: ...

    def __getitem__(self, key: str) -> Any: ...


@dataclass(frozen=True)
class ListQuery:
    """What one product list request asks for."""

    category_id: int | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None
    name_query: str | None = None
    ordering: str = DEFAULT_PRODUCT_ORDERING
    # The boundary row's values of the ordering's fields (a decoded cursor), and
    # whether the page runs forward from it.
    position: list[Any] | None = None
    forward: bool = True
    size: int = KeysetPagination.page_size


def _plain_filters(params: dict[str, str]) -> dict[str, Any] | None:
    """The filters when every one present is in its plain spelling, else None."""
    if "q" in params:
        return None
    found: dict[str, Any] = {"ordering": DEFAULT_PRODUCT_ORDERING, "in_stock": None}
    if (raw := params.get("category")) is not None:
        if not _ID.fullmatch(raw):
            return None
        found["category"] = int(raw)
    for name in ("min_price", "max_price"):
        if (raw := params.get(name)) is not None:
            if not _PRICE.fullmatch(raw):
                return None
            found[name] = Decimal(raw).quantize(_CENTS)
    low, high = found.get("min_price"), found.get("max_price")
    if low is not None and high is not None and low > high:
        return None  # the serializer words the refusal
    if (raw := params.get("in_stock")) is not None:
        if raw not in _IN_STOCK:
            return None
        found["in_stock"] = _IN_STOCK[raw]
    if (raw := params.get("ordering")) is not None:
        if raw not in PRODUCT_ORDERINGS:
            return None
        found["ordering"] = raw
    return found


def _read(params: QueryParams) -> dict[str, str]:
    """The parameters the list reads, the last value of each (as the serializer reads them).

    A plain dict: a QueryDict raises and catches a KeyError for every absent key asked.
    """
    return {name: params[name] for name in LIST_PARAMS if name in params}


def product_list_filters(params: QueryParams) -> dict[str, Any]:
    """The validated filters (ProductFilterSerializer's ``validated_data``); raises its 400."""
    return _filters(params, _read(params))


def _filters(params: QueryParams, values: dict[str, str]) -> dict[str, Any]:
    plain = _plain_filters(values)
    if plain is not None:
        return plain
    serializer = ProductFilterSerializer(data=params)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def product_list_query(params: QueryParams) -> ListQuery:
    """The request's ListQuery; raises the 400 (ValidationError, InvalidInput) for bad input.

    Filters are checked first, then the page size, then the cursor, which is
    decoded against the ordering asked for.
    """
    values = _read(params)
    filters = _filters(params, values)
    size = KeysetPagination.size_parse(values.get(PAGE_SIZE))
    ordering = filters["ordering"]
    position, forward = None, True
    if raw := values.get(CURSOR):
        fields = PRODUCT_ORDERINGS[ordering]
        position, forward = cursor_position(raw, ordering=fields, model=Product)
    return ListQuery(
        category_id=filters.get("category"),
        min_price=filters.get("min_price"),
        max_price=filters.get("max_price"),
        in_stock=filters.get("in_stock"),
        name_query=filters.get("q") or None,
        ordering=ordering,
        position=position,
        forward=forward,
        size=size,
    )
