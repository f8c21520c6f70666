"""A product as the catalog shows it: its public fields, declared once.

:data:`PRODUCT_FIELDS` is the one list of what a product read returns. Every
rendering of a product is derived from it:

- the output of ``serializers.ProductSerializer`` (its ``Meta.fields``, its
  read-only fields, and the serializer fields of the computed values), hence
  the OpenAPI schema;
- :func:`product_representation`, the dict the DRF path renders, built from a
  model instance by the same per-kind rules;
- :func:`product_rows_sql`, the text of the PL/pgSQL function
  ``emporium_product_rows`` with which PostgreSQL writes each product's JSON
  for the lean read path (docs/adr/0020-lean-gateway-and-rendered-rows.md).
  It is kept in ``emporium/catalog/sql/product_rows.sql`` (written by
  ``python manage.py catalog_sql``) and installed by a migration that
  snapshots it; tests prove file, snapshot and declaration agree;
- :class:`RenderedRow`, the function's result columns, read by name.

A field's *kind* says how its value is written, in Python and in SQL alike;
its *sources* are the columns it is computed from (``category__name`` is the
category's name). Adding a field is one line here plus the model field
(docs/architecture.md, "Adding a product field").
"""

from __future__ import annotations

import collections
import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, TypeAlias

from django.db import models
from django.utils import timezone
from rest_framework import serializers

from emporium.catalog.models import PRODUCT_ORDERINGS, Category, Product, rating_average_of
from emporium.core.representation import datetime_text, decimal_text

# A serializer field of whichever kind (its value and data types vary by field).
AnyField: TypeAlias = serializers.Field[Any, Any, Any, Any]


class Kind(Enum):
    """How a value is written in the JSON (and which DRF field describes it)."""

    INTEGER = "integer"  # a JSON number
    TEXT = "text"  # a JSON string
    MONEY = "money"  # a decimal with two places, as a JSON string
    POSITIVE = "positive"  # true when the (integer) source is above zero
    OBJECT = "object"  # free-form JSON stored as such
    RATING = "rating"  # total / count to the cent as a string, or null without a count
    DATETIME = "datetime"  # ISO 8601 in the current time zone, "Z" for UTC


@dataclass(frozen=True)
class PublicField:
    """One key of a product's JSON.

    ``sources`` defaults to the model field of the same name. ``writable``
    fields are accepted on create and update (their input rules are the
    serializer's); the others are read-only.
    """

    name: str
    kind: Kind
    sources: tuple[str, ...] = ()
    writable: bool = False
    source_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "source_names", self.sources or (self.name,))


PRODUCT_FIELDS: tuple[PublicField, ...] = (
    PublicField("id", Kind.INTEGER),
    PublicField("sku", Kind.TEXT, writable=True),
    PublicField("name", Kind.TEXT, writable=True),
    PublicField("description", Kind.TEXT, writable=True),
    PublicField("price", Kind.MONEY, writable=True),
    PublicField("stock_quantity", Kind.INTEGER, writable=True),
    PublicField("in_stock", Kind.POSITIVE, ("stock_quantity",)),
    PublicField("category", Kind.INTEGER, ("category_id",), writable=True),
    PublicField("category_name", Kind.TEXT, ("category__name",)),
    PublicField("attributes", Kind.OBJECT, writable=True),
    PublicField("rating_average", Kind.RATING, ("rating_total", "review_count")),
    PublicField("review_count", Kind.INTEGER),
    PublicField("created_at", Kind.DATETIME),
    PublicField("updated_at", Kind.DATETIME),
)

PRODUCT_FIELD_NAMES = tuple(public.name for public in PRODUCT_FIELDS)
PRODUCT_READ_ONLY_FIELD_NAMES = tuple(
    public.name for public in PRODUCT_FIELDS if not public.writable
)


def source_field(source: str) -> models.Field[Any, Any]:
    """The model field a source names (``category_id`` is the foreign key's column)."""
    if source.startswith("category__"):
        found = Category._meta.get_field(source.removeprefix("category__"))
    else:
        found = Product._meta.get_field("category" if source == "category_id" else source)
    if not isinstance(found, models.Field):
        raise TypeError(f"{source} is not a concrete column")
    return found


def _nullable(public: PublicField) -> bool:
    return public.kind is not Kind.RATING and source_field(public.source_names[0]).null


# -- the DRF path: serializer fields and the dict it renders -------------------------------


def computed_serializer_fields() -> dict[str, tuple[type[AnyField], dict[str, Any]]]:
    """The serializer field (class, arguments) of each read-only value that is not a model field.

    ``ProductSerializer.build_field`` uses them; model fields are built by
    ModelSerializer from the model, as for any model serializer, so the schema
    describes them from the model.
    """
    model_names = {found.name for found in Product._meta.concrete_fields}
    made: dict[str, tuple[type[AnyField], dict[str, Any]]] = {}
    for public in PRODUCT_FIELDS:
        if public.writable or public.name in model_names:
            continue
        source = {"source": public.source_names[0].replace("__", ".")}
        if public.kind is Kind.POSITIVE:
            made[public.name] = (serializers.BooleanField, {"read_only": True, **source})
        elif public.kind is Kind.RATING:
            made[public.name] = (
                serializers.DecimalField,
                {"max_digits": 3, "decimal_places": 2, "read_only": True, "allow_null": True},
            )
        elif public.kind in (Kind.TEXT, Kind.INTEGER):
            field_class = (
                serializers.CharField if public.kind is Kind.TEXT else serializers.IntegerField
            )
            arguments = {"read_only": True, **source}
            if _nullable(public):
                arguments["allow_null"] = True
            made[public.name] = (field_class, arguments)
        else:
            raise NotImplementedError(f"no computed serializer field for {public.kind}")
    return made


def _money(value: Decimal) -> str:
    return decimal_text(value)


def _attributes(value: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(key): item for key, item in value.items()}


_PYTHON: dict[Kind, Callable[..., Any]] = {
    Kind.INTEGER: int,
    Kind.TEXT: str,
    Kind.MONEY: _money,
    Kind.POSITIVE: lambda value: value > 0,
    Kind.OBJECT: _attributes,
}


def _source_value(product: Product, source: str) -> Any:
    if source.startswith("category__"):
        return getattr(product.category, source.removeprefix("category__"))
    return getattr(product, source)


def product_representation(
    product: Product, *, zone: datetime.tzinfo | None = None
) -> dict[str, Any]:
    """What ``ProductSerializer(product).data`` holds, without DRF's per-field machinery.

    Serialising a page through the ModelSerializer was most of an uncached
    page's time (docs/db_optimization.md); tests pin that both give the same
    bytes. ``zone`` saves looking the current time zone up for every product.
    """
    data: dict[str, Any] = {}
    for public in PRODUCT_FIELDS:
        values = [_source_value(product, source) for source in public.source_names]
        kind = public.kind
        if kind is Kind.RATING:
            total, count = values
            rating = rating_average_of(total=total, count=count)
            data[public.name] = None if rating is None else decimal_text(rating)
        elif values[0] is None:
            data[public.name] = None
        elif kind is Kind.DATETIME:
            if zone is None:
                zone = timezone.get_current_timezone()
            data[public.name] = datetime_text(values[0], zone)
        else:
            data[public.name] = _PYTHON[kind](values[0])
    return data


# -- the lean path: the SQL function that writes the JSON ----------------------------------

PRODUCT_ROWS_FUNCTION = "emporium_product_rows"
PRODUCT_ROWS_SQL_NAME = "product_rows"  # emporium/catalog/sql/product_rows.sql


class _Literal(str):
    """Constant JSON text inside a generated expression."""


Segment = str  # an SQL expression, or a _Literal


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _column_sql(source: str) -> str:
    column = source_field(source).column
    return f"c.{column}" if source.startswith("category__") else f"p.{column}"


def _utc_text(column: str) -> list[Segment]:
    # As datetime.isoformat() writes a UTC time: microseconds only when there are some.
    return [
        _Literal('"'),
        f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')",
        f"CASE WHEN date_part('microseconds', {column})::bigint % 1000000 = 0 THEN '' "
        f"ELSE to_char({column} AT TIME ZONE 'UTC', '.US') END",
        _Literal('Z"'),
    ]


def _rating_text(name: str, count: str) -> list[Segment]:
    cents = f"r_{name}.cents"
    return [
        f"CASE WHEN {count} = 0 THEN 'null' ELSE "
        f"'\"' || ({cents} / 100) || '.' || lpad(({cents} % 100)::text, 2, '0') || '\"' END"
    ]


def _rating_lateral(name: str, total: str, count: str) -> str:
    # total / count to the cent, half to even (Decimal.quantize): the quotient in
    # cents, plus one when the remainder is over half, or half on an odd quotient.
    return f"""\
    CROSS JOIN LATERAL (
        SELECT q.cents + CASE
            WHEN 2 * q.remainder > {count}
              OR (2 * q.remainder = {count} AND q.cents % 2 = 1) THEN 1
            ELSE 0 END AS cents
        FROM (SELECT ({total} * 100) / NULLIF({count}, 0) AS cents,
                     ({total} * 100) % NULLIF({count}, 0) AS remainder) AS q
    ) AS r_{name}
"""  # noqa: S608 - names from the declaration


def _value_segments(public: PublicField) -> list[Segment]:
    columns = [_column_sql(source) for source in public.source_names]
    column = columns[0]
    kind = public.kind
    segments: list[Segment]
    if kind is Kind.INTEGER:
        segments = [f"{column}::text"]
    elif kind is Kind.TEXT:
        # to_json() escapes as json.dumps(ensure_ascii=False) does; U+2028 and
        # U+2029 are escaped by the caller, as JSONRenderer does.
        segments = [f"to_json({column})::text"]
    elif kind is Kind.MONEY:
        segments = [_Literal('"'), f"{column}::text", _Literal('"')]
    elif kind is Kind.POSITIVE:
        segments = [f"({column} > 0)::text"]
    elif kind is Kind.DATETIME:
        segments = _utc_text(column)
    elif kind is Kind.RATING:
        return _rating_text(public.name, columns[1])
    else:
        raise NotImplementedError(f"no SQL for {kind}")
    if _nullable(public):
        return [f"COALESCE({_concatenation(segments)}, 'null')"]
    return segments


def _concatenation(segments: Sequence[Segment]) -> str:
    merged: list[Segment] = []
    for segment in segments:
        if isinstance(segment, _Literal) and merged and isinstance(merged[-1], _Literal):
            merged[-1] = _Literal(merged[-1] + segment)
        else:
            merged.append(segment)
    return "\n        || ".join(
        _quote_literal(segment) if isinstance(segment, _Literal) else segment for segment in merged
    )


def _ordering_fields() -> list[str]:
    names: list[str] = []
    for ordering in PRODUCT_ORDERINGS.values():
        for name in ordering:
            if name.lstrip("-") not in names:
                names.append(name.lstrip("-"))
    return names


def _cursor_column(name: str) -> tuple[str, str, str]:
    """(result column, its SQL type, its expression) of an ordering field's cursor value."""
    model_field = Product._meta.get_field(name)
    column = f"p.{model_field.column}"  # type: ignore[union-attr]
    if isinstance(model_field, models.DateTimeField):
        # Microseconds since 1970: a page needs only two of them as datetimes.
        return f"cursor_{name}", "bigint", f"(extract(epoch FROM {column}) * 1000000)::bigint"
    if isinstance(model_field, models.DecimalField):
        return f"cursor_{name}", "numeric", column
    if isinstance(model_field, models.CharField | models.TextField):
        return f"cursor_{name}", "text", f"{column}::text"
    return f"cursor_{name}", "bigint", f"{column}::bigint"


def _layout() -> tuple[list[tuple[str, str]], list[str]]:
    """The JSON as (result column, SQL text expression) pairs, and the OBJECT columns among them.

    The JSON is cut at each OBJECT value: PostgreSQL writes the text around
    them, and the stored object is returned as text for Python to write its
    numbers as Python does (``fast_path``).
    """
    columns: list[tuple[str, str]] = []
    objects: list[str] = []
    pending: list[Segment] = []
    for index, public in enumerate(PRODUCT_FIELDS):
        key = json.dumps(public.name, ensure_ascii=False)
        pending.append(_Literal(("{" if index == 0 else ",") + key + ":"))
        if public.kind is Kind.OBJECT:
            columns.append((f"part_{len(objects)}", _concatenation(pending)))
            columns.append((public.name, f"{_column_sql(public.source_names[0])}::text"))
            objects.append(public.name)
            pending = []
        else:
            pending.extend(_value_segments(public))
    pending.append(_Literal("}"))
    columns.append((f"part_{len(objects)}", _concatenation(pending)))
    return columns, objects


def _rendered_columns() -> tuple[list[tuple[str, str, str]], list[str]]:
    layout, objects = _layout()
    columns = [(name, "text", expression) for name, expression in layout]
    columns += [_cursor_column(name) for name in _ordering_fields()]
    return columns, objects


def product_rows_sql() -> str:
    """The text of ``sql/product_rows.sql``: ``emporium_product_rows(ids)``, from PRODUCT_FIELDS.

    Laid out as ``emporium.core.db.sql`` reads SQL files: the install part,
    then after ``-- uninstall`` what removes it.
    """
    columns, _ = _rendered_columns()
    returns = ",\n    ".join(f"{name} {sql_type}" for name, sql_type, _ in columns)
    select = ",\n        ".join(expression for _, _, expression in columns)
    laterals = "".join(
        _rating_lateral(public.name, *[_column_sql(source) for source in public.source_names])
        for public in PRODUCT_FIELDS
        if public.kind is Kind.RATING
    )
    product_table = Product._meta.db_table
    category_table = Category._meta.db_table
    return f"""\
-- Generated from emporium/catalog/representation.py by `python manage.py catalog_sql`;
-- do not edit: change PRODUCT_FIELDS and run the command again.
--
-- {PRODUCT_ROWS_FUNCTION}(ids): each product of ids (in their order; missing ids are
-- skipped) as the catalog shows it, written by PostgreSQL: its JSON in parts cut at
-- each free-form object, then the values a cursor is made of. As PL/pgSQL, its query
-- is prepared once per connection and kept as a generic plan, so this long expression
-- is not planned again for every page (that planning cost more than running it).
-- Times are written in UTC; the caller uses the function only when UTC is current.

-- The result columns follow the fields, and CREATE OR REPLACE cannot change them.
DROP FUNCTION IF EXISTS {PRODUCT_ROWS_FUNCTION}(bigint[]);

CREATE FUNCTION {PRODUCT_ROWS_FUNCTION}(p_ids bigint[])
RETURNS TABLE (
    {returns}
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT
        {select}
    FROM unnest(p_ids) WITH ORDINALITY AS k(id, n)
    JOIN {product_table} AS p ON p.id = k.id
    JOIN {category_table} AS c ON c.id = p.category_id
{laterals}    ORDER BY k.n;
END
$fn$;

-- uninstall
DROP FUNCTION IF EXISTS {PRODUCT_ROWS_FUNCTION}(bigint[]);
"""  # noqa: S608 - names from the declaration


RENDERED_COLUMNS: tuple[str, ...] = tuple(name for name, _, _ in _rendered_columns()[0])
RenderedRow: type[Any] = collections.namedtuple("RenderedRow", RENDERED_COLUMNS)  # type: ignore[misc]
"""A result row of ``emporium_product_rows``: its columns by name."""

OBJECT_COLUMNS: tuple[str, ...] = tuple(_rendered_columns()[1])
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def rendered_position(row: Any, fields: Sequence[str]) -> list[Any]:
    """A rendered row's values of the ordering ``fields``, as a cursor holds them."""
    values = []
    for ordering_field in fields:
        name = ordering_field.lstrip("-")
        value = getattr(row, f"cursor_{name}")
        if isinstance(Product._meta.get_field(name), models.DateTimeField):
            value = _EPOCH + datetime.timedelta(microseconds=value)
        values.append(value)
    return values
