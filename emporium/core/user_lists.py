"""A signed-in user's own list of products (a cart, a wishlist) read in front of Django.

Such a list is a row of its owner's (one per user), with lines that each point
at the list and at one product. :func:`user_list_read` makes the handler that
``core.gateway.LeanGateway`` calls for a cookie-less GET of the list with a
valid Bearer token (``request.user`` is set from the token): one prepared
statement reads the list, its lines and their products, and the app's
representation function, the one DRF's path renders with, writes the document.

What differs from list to list is given by the app: the three row shapes
(``representation.serializer_shape`` of its serializers: the columns and their
rendering, each with its model and table alias), the order of the lines (its
selector's ordering) and the representation. The statement's tables and joins
follow from the shapes' models. A caller without a list yet (DRF's path creates
it) and anything DRF would negotiate are left to DRF's path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.http import HttpRequest, HttpResponse

from emporium.core.db.prepared import fetch_prepared
from emporium.core.gateway import json_answer, json_read
from emporium.core.representation import RowShape, order_by_sql

Rendered = dict[str, Any]
# The list's document from its rendered fields and its lines' (line, product) fields.
Representation = Callable[[Rendered, list[tuple[Rendered, Rendered]]], Rendered]


def _key_column(model: type[models.Model], to: type[models.Model]) -> str:
    """The column of ``model``'s one relation to ``to``."""
    keys = [
        field
        for field in model._meta.concrete_fields
        if field.is_relation and field.related_model is to
    ]
    if len(keys) != 1:
        raise ImproperlyConfigured(
            f"{model.__name__} needs exactly one relation to {to.__name__}, not {len(keys)}."
        )
    return str(keys[0].column)


def user_list_sql(shapes: tuple[RowShape, RowShape, RowShape], ordering: Sequence[str]) -> str:
    """The statement reading a user's list (the parameter: the user's id), one row a line.

    A list without lines is one row with the line's and the product's columns NULL.
    """
    owner, line, product = shapes
    o, i, p = owner.alias, line.alias, product.alias
    return (
        f"SELECT {owner.select}, {line.select}, {product.select}"  # noqa: S608 - model names
        f" FROM {owner.model._meta.db_table} {o}"
        f" LEFT JOIN {line.model._meta.db_table} {i}"
        f" ON {i}.{_key_column(line.model, owner.model)} = {o}.{owner.model._meta.pk.column}"
        f" LEFT JOIN {product.model._meta.db_table} {p}"
        f" ON {p}.{product.model._meta.pk.column} = {i}.{_key_column(line.model, product.model)}"
        f" WHERE {o}.{_key_column(owner.model, get_user_model())} = %s"
        f" ORDER BY {order_by_sql(line.model, ordering, alias=i)}"
    )


def user_list_read(
    shapes: tuple[RowShape, RowShape, RowShape],
    *,
    ordering: Sequence[str],
    representation: Representation,
) -> Callable[[HttpRequest], HttpResponse | None]:
    """The gateway handler for ``GET`` of the signed-in user's list (see the module's notes).

    ``shapes`` are the list's, a line's and a line's product's; ``ordering`` is
    the lines' order as a queryset ordering of the line's fields.
    """
    sql = user_list_sql(shapes, ordering)
    owner, line, product = shapes
    # Everything a request needs that does not depend on it, bound once.
    render_owner, render_line, render_product = owner.render, line.render, product.render
    line_at = len(owner.names)
    product_at = line_at + len(line.names)

    def read(request: HttpRequest) -> HttpResponse | None:
        if not json_read(request):
            return None
        rows = fetch_prepared(sql, [request.user.pk])
        if not rows:
            return None  # no list yet: DRF's path creates it
        lines = [
            (render_line(row, line_at), render_product(row, product_at))
            for row in rows
            if row[line_at] is not None
        ]
        return json_answer(representation(render_owner(rows[0]), lines))

    return read
