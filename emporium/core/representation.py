"""Field renderings shared by the hand-written representations of hot read and write paths.

They give exactly what DRF's fields give (the representation tests compare
the two), without DRF's per-field machinery. The columns such a path selects,
and the order it reads them in, are derived from the serializers' fields and
the selectors' orderings (:func:`serializer_shape`, :func:`order_by_sql`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils import timezone
from rest_framework.serializers import BaseSerializer

_CENTS = Decimal("0.01")


def decimal_text(value: Decimal) -> str:
    """DRF's DecimalField(decimal_places=2) with COERCE_DECIMAL_TO_STRING."""
    return f"{value.quantize(_CENTS):f}"


def datetime_text(value: datetime.datetime, zone: datetime.tzinfo | None = None) -> str:
    """DRF's DateTimeField with USE_TZ: the current time zone, ISO 8601, "Z" for UTC.

    ``zone`` saves looking the current time zone up again for every value of a page.
    """
    text = value.astimezone(zone or timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _decimal_places(places: int) -> Callable[[Decimal], str]:
    exponent = Decimal(1).scaleb(-places)
    return lambda value: f"{value.quantize(exponent):f}"


def _as_is(value: Any) -> Any:
    return value


def field_renderer(field: models.Field[Any, Any]) -> Callable[[Any], Any]:
    """How DRF's ``ModelSerializer`` writes a stored value of ``field`` (read as the database
    gives it): times as :func:`datetime_text`, decimals as strings with the field's places,
    a foreign key as its id, everything else as it is."""
    if isinstance(field, models.DateTimeField):
        return datetime_text
    if isinstance(field, models.DecimalField):
        return _decimal_places(int(field.decimal_places))
    return _as_is


@dataclass(frozen=True)
class RowShape:
    """The columns of a model's serializer fields in a row, and their rendering.

    Built from a serializer's fields (:func:`serializer_shape`, :func:`row_shape`),
    so a hot read path selects and writes exactly the fields the serializer declares.
    """

    names: tuple[str, ...]
    columns: tuple[str, ...]
    renderers: tuple[Callable[[Any], Any], ...]
    # Where the columns are read from: the model's table under this alias.
    model: type[models.Model]
    alias: str

    @property
    def select(self) -> str:
        return ", ".join(self.columns)

    def render(self, row: Sequence[Any], start: int = 0) -> dict[str, Any]:
        """The serializer's dict for the values at ``row[start:start + len(names)]``."""
        zone = timezone.get_current_timezone()  # once, not once per time value
        return {
            name: None
            if value is None
            else datetime_text(value, zone)
            if render is datetime_text
            else render(value)
            for name, render, value in zip(
                self.names, self.renderers, row[start : start + len(self.names)], strict=True
            )
        }


def row_shape(model: type[models.Model], names: Sequence[str], *, alias: str) -> RowShape:
    """The shape of ``names`` (model fields) of ``model``, selected from table alias ``alias``."""
    fields = [model._meta.get_field(name) for name in names]
    return RowShape(
        names=tuple(names),
        columns=tuple(f"{alias}.{field.column}" for field in fields),  # type: ignore[union-attr]
        renderers=tuple(field_renderer(field) for field in fields),  # type: ignore[arg-type]
        model=model,
        alias=alias,
    )


def serializer_shape(
    serializer: type[BaseSerializer[Any]], model: type[models.Model], *, alias: str
) -> RowShape:
    """The shape of ``serializer``'s fields that are columns of ``model``, in its order.

    The fields are ``Meta.fields``, or the declared fields of a serializer without
    them. A nested serializer (a line's product, a list's lines) and a field that
    names no concrete field of ``model`` (a computed value: a total, a count) are
    not columns: the representation built on the shape adds those itself.
    """
    names = getattr(getattr(serializer, "Meta", None), "fields", None)
    if names is None:
        names = list(serializer._declared_fields)  # type: ignore[attr-defined]
    if isinstance(names, str):
        raise ImproperlyConfigured(f"{serializer.__name__} must list its fields by name.")
    declared = serializer._declared_fields  # type: ignore[attr-defined]
    columns = {field.name for field in model._meta.concrete_fields}
    return row_shape(
        model,
        [
            name
            for name in names
            if name in columns and not isinstance(declared.get(name), BaseSerializer)
        ],
        alias=alias,
    )


def order_by_sql(model: type[models.Model], ordering: Sequence[str], *, alias: str) -> str:
    """An ``ORDER BY`` list for a queryset ordering (``"-created_at"``) of ``model``'s fields."""
    terms = []
    for name in ordering:
        field = model._meta.get_field(name.lstrip("-"))
        column = f"{alias}.{field.column}"  # type: ignore[union-attr]
        terms.append(f"{column} DESC" if name.startswith("-") else column)
    return ", ".join(terms)
