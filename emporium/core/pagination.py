"""Keyset (seek) pagination over any ordering that ends in the primary key.

DRF's CursorPagination seeks on the first ordering field only and falls back
to an offset for ties, so a page deep inside a run of equal prices costs more
the deeper it is. Here the cursor carries the values of every ordering field
of the boundary row, and the next page is the rows strictly after that tuple:
page 5,000 costs the same index range scan as page 1.

The ordering is read from the queryset (``order_by``), so the selector that
builds the queryset decides it and the paginator only follows it. The last
ordering field must be the primary key, which makes every position unique.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field, Model, Q, QuerySet
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.core.errors import InvalidInput
from emporium.core.parsers import JSONTooDeep, json_loads


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"
    default_message = "The cursor is not valid for this list."


def _encode_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


def _split(field: str) -> tuple[str, bool]:
    return (field[1:], True) if field.startswith("-") else (field, False)


def keyset_filter(ordering: Sequence[str], values: Sequence[Any], *, forward: bool) -> Q:
    """Rows strictly after (forward) or before the position ``values`` in ``ordering``.

    For ordering (a, b, id) that is a > va OR (a = va AND b > vb) OR (a = va AND b = vb
    AND id > vid), with the comparison flipped on descending fields. The leading
    ``a >= va`` is redundant logically but lets the planner bound the index scan.
    """
    condition = Q()
    equal_prefix = Q()
    for field, value in zip(ordering, values, strict=True):
        name, descending = _split(field)
        # "after" means greater on an ascending field walked forward, and flips
        # with either a descending field or a backward walk.
        lookup = "gt" if descending != forward else "lt"
        condition |= equal_prefix & Q(**{f"{name}__{lookup}": value})
        equal_prefix &= Q(**{name: value})
    first_name, first_descending = _split(ordering[0])
    bound = "lte" if first_descending == forward else "gte"
    return Q(**{f"{first_name}__{bound}": values[0]}) & condition


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    if not isinstance(field, Field):
        raise ValueError(f"{name} is not a concrete field")
    return field


def ordering_fingerprint(ordering: Sequence[str]) -> str:
    """What a cursor carries to say which ordering it was made for."""
    return _fingerprint(",".join(ordering))


@functools.lru_cache(maxsize=256)
def _fingerprint(joined: str) -> str:
    return hashlib.sha256(joined.encode()).hexdigest()[:8]


def cursor_token(ordering: Sequence[str], values: Sequence[Any], *, forward: bool) -> str:
    """The opaque cursor for the position ``values`` (one per ordering field)."""
    payload = {
        "f": ordering_fingerprint(ordering),
        "v": [_encode_value(value) for value in values],
        "d": "n" if forward else "p",
    }
    token = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
    return token.decode().rstrip("=")


def cursor_position(
    raw: str, *, ordering: Sequence[str], model: type[Model]
) -> tuple[list[Any], bool]:
    """The position and direction (True: forward) a cursor holds; InvalidCursor if forged.

    Each value is converted and validated by its model field, so a value the
    column cannot hold is refused here rather than failing in the database.
    """
    try:
        padded = raw + "=" * (-len(raw) % 4)
        payload = json_loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(payload, dict) or payload.get("f") != ordering_fingerprint(ordering):
            raise InvalidCursor()
        raw_values = payload["v"]
        direction = payload["d"]
        if direction not in ("n", "p") or not isinstance(raw_values, list):
            raise InvalidCursor()
        if len(raw_values) != len(ordering):
            raise InvalidCursor()
        fields = [_field(model, _split(name)[0]) for name in ordering]
        values = [field.to_python(value) for field, value in zip(fields, raw_values, strict=True)]
        if any(value is None for value in values):
            raise InvalidCursor()
        # A forged value the column cannot hold (an id past bigint, a price with
        # too many digits) would fail in the database as a 500; refuse it here.
        for field, value in zip(fields, values, strict=True):
            field.run_validators(value)
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error, JSONTooDeep):
        raise InvalidCursor() from None
    except DjangoValidationError:
        raise InvalidCursor() from None
    return values, direction == "n"


class KeysetPagination(BasePagination):
    page_size = 20
    max_page_size = 100
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"
    # When set, next/previous links carry exactly these parameters (plus the
    # cursor) instead of echoing the request's query string. A view that caches
    # its pages sets it, so that parameters it ignores cannot end up in the bytes.
    link_query: Mapping[str, str] | None = None

    def get_page_size(self, request: Request) -> int:
        """The page size the request asks for; raises InvalidInput on a malformed one."""
        return self._page_size(request)

    def paginate_queryset(  # type: ignore[override]
        self, queryset: QuerySet[Any], request: Request, view: APIView | None = None
    ) -> list[Any]:
        ordering = tuple(str(field) for field in queryset.query.order_by)
        if not ordering or _split(ordering[-1])[0] not in ("id", "pk"):
            raise ValueError("Keyset pagination needs an ordering that ends with the primary key.")
        size = self._page_size(request)
        raw_cursor = request.query_params.get(self.cursor_query_param)
        position, forward = None, True
        if raw_cursor:
            position, forward = cursor_position(raw_cursor, ordering=ordering, model=queryset.model)
        return self.paginate_at(queryset, request, position=position, forward=forward, size=size)

    def paginate_at(
        self,
        queryset: QuerySet[Any],
        request: Request,
        *,
        position: Sequence[Any] | None,
        forward: bool,
        size: int,
    ) -> list[Any]:
        """The page at a position already read from the request (``cursor_position``).

        For a view that parsed its page size and cursor with its other parameters.
        """
        ordering = tuple(str(field) for field in queryset.query.order_by)
        if not ordering or _split(ordering[-1])[0] not in ("id", "pk"):
            raise ValueError("Keyset pagination needs an ordering that ends with the primary key.")
        self.request = request
        self.size = size
        self.ordering = ordering
        self.model: type[Model] = queryset.model
        if position is not None:
            queryset = queryset.filter(keyset_filter(ordering, position, forward=forward))
        if not forward:
            queryset = queryset.reverse()

        rows = list(queryset[: self.size + 1])
        has_more = len(rows) > self.size
        rows = rows[: self.size]
        if not forward:
            rows.reverse()

        if forward:
            self.has_next, self.has_previous = has_more, position is not None
        else:
            self.has_next, self.has_previous = True, has_more
        self.first_row = rows[0] if rows else None
        self.last_row = rows[-1] if rows else None
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "next": self._link(self.last_row, forward=True) if self.has_next else None,
                "previous": self._link(self.first_row, forward=False)
                if self.has_previous
                else None,
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque position from a previous page's next or previous link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Items per page, 1 to {self.max_page_size}; more is a 400.",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]

    def _page_size(self, request: Request) -> int:
        return self.size_parse(request.query_params.get(self.page_size_query_param))

    @classmethod
    def size_parse(cls, raw: str | None) -> int:
        """The page size a ``page_size`` value asks for; raises InvalidInput on a malformed one."""
        if raw is None:
            return cls.page_size
        # ASCII digits only: int() would also take " 5", "+5", "1_0" and other scripts' digits.
        if not (raw.isascii() and raw.isdigit()):
            raise InvalidInput("page_size must be a whole number.", details={"page_size": [raw]})
        size = int(raw)
        if not 1 <= size <= cls.max_page_size:
            raise InvalidInput(
                f"page_size must be from 1 to {cls.max_page_size}.", details={"page_size": [raw]}
            )
        return size

    def _position(self, row: Model) -> list[Any]:
        return [getattr(row, _split(field)[0]) for field in self.ordering]

    def _link(self, row: Model | None, *, forward: bool) -> str | None:
        if row is None:
            return None
        # A repeated parameter keeps its last value, the one the view reads.
        source = self.link_query if self.link_query is not None else self.request.query_params
        params = dict(source.items())
        params[self.cursor_query_param] = cursor_token(
            self.ordering, self._position(row), forward=forward
        )
        return self.request.build_absolute_uri(
            f"{self.request.path}?{urlencode(sorted(params.items()))}"
        )
