from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Field, QuerySet

from emporium.catalog.models import (
    DEFAULT_PRODUCT_ORDERING,
    PRODUCT_ORDERINGS,
    Category,
    Product,
)
from emporium.catalog.representation import (
    PRODUCT_ROWS_FUNCTION,
    RENDERED_COLUMNS,
    RenderedRow,
)
from emporium.core.db.prepared import fetch_prepared
from emporium.core.errors import InvalidInput

__all__ = ["DEFAULT_PRODUCT_ORDERING", "PRODUCT_ORDERINGS"]


def category_list() -> QuerySet[Category]:
    return Category.objects.order_by("path", "id")


def category_subtree_ids(*, category_id: int) -> QuerySet[Category, Any]:
    """The category and all its descendants, as a subquery of ids."""
    path = Category.objects.filter(pk=category_id).values_list("path", flat=True).first()
    if path is None:
        raise unknown_category(category_id)
    return Category.objects.filter(path__startswith=path).values("id")


def unknown_category(category_id: int) -> InvalidInput:
    """The error for a category filter naming no category (raised by the caller)."""
    return InvalidInput(
        "No such category.", details={"category": [f"Category {category_id} does not exist."]}
    )


def product_list(
    *,
    category_id: int | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    in_stock: bool | None = None,
    name_query: str | None = None,
    ordering: str = DEFAULT_PRODUCT_ORDERING,
) -> QuerySet[Product]:
    queryset = Product.objects.select_related("category")
    if category_id is not None:
        queryset = queryset.filter(category_id__in=category_subtree_ids(category_id=category_id))
    if min_price is not None:
        queryset = queryset.filter(price__gte=min_price)
    if max_price is not None:
        queryset = queryset.filter(price__lte=max_price)
    if in_stock is True:
        queryset = queryset.filter(stock_quantity__gt=0)
    elif in_stock is False:
        queryset = queryset.filter(stock_quantity=0)
    if name_query:
        queryset = queryset.filter(name__icontains=name_query)
    return queryset.order_by(*PRODUCT_ORDERINGS[ordering])


def product_detail_queryset() -> QuerySet[Product]:
    return Product.objects.select_related("category")


# -- products written by PostgreSQL (docs/adr/0020-lean-gateway-and-rendered-rows.md) ----
#
# The lean read path asks PostgreSQL for a page's ids in one statement planned
# for the request's filters, and has emporium_product_rows() (generated from
# representation.PRODUCT_FIELDS) write the rows: representation.RenderedRow.

_RENDERED = f"SELECT {', '.join(RENDERED_COLUMNS)} FROM {PRODUCT_ROWS_FUNCTION}"  # noqa: S608 - constants

# Row-value comparison, (a, id) > (x, y), is the keyset condition for all six
# orderings because each orders both of its columns the same way: one index range.
for _ordering in PRODUCT_ORDERINGS.values():
    if len({field.startswith("-") for field in _ordering}) != 1:
        raise ValueError(f"ordering {_ordering} mixes directions")


def _db_value(name: str, value: Any) -> Any:
    """A Python value as the ORM would send it for this column."""
    model_field = Product._meta.get_field(name)
    assert isinstance(model_field, Field)  # noqa: S101 - the orderings name concrete columns
    return model_field.get_db_prep_value(value, connection, prepared=False)


def category_subtree_id_list(*, category_id: int) -> list[int]:
    """The ids of a category and all its descendants; empty when there is no such category."""
    table = connection.ops.quote_name(Category._meta.db_table)
    # Paths hold only digits and slashes, so they need no LIKE escaping.
    sql = (
        f"SELECT c.id FROM {table} AS c WHERE c.path LIKE "  # noqa: S608 - constants only
        f"(SELECT r.path FROM {table} AS r WHERE r.id = %s) || '%%'"
    )
    return [int(row[0]) for row in fetch_prepared(sql, [category_id])]


@dataclass(frozen=True)
class ProductPage:
    rows: list[Any]  # RenderedRow
    has_next: bool
    has_previous: bool


def _bounds(
    names: Sequence[str],
    position: Sequence[Any] | None,
    reverse: bool,
    min_price: Decimal | None,
    max_price: Decimal | None,
) -> tuple[bool, Decimal | None, Decimal | None]:
    """Whether the keyset condition is needed, and the price bounds still needed beside it.

    Ordered by price, a cursor and a price bound limit the same index column, and
    PostgreSQL starts its scan at the row comparison even when the bound is
    tighter (reading every row in between). Of the two limits on one side, only
    the tighter is kept: it implies the other.
    """
    if position is None or names[0] != "price":
        return position is not None, min_price, max_price
    at = Decimal(position[0])
    if reverse:  # walking down from the cursor: it and max_price are upper limits
        if max_price is not None and max_price < at:
            return False, min_price, max_price
        return True, min_price, None
    if min_price is not None and min_price > at:
        return False, min_price, max_price
    return True, None, max_price


def product_page_rows(
    *,
    category_ids: Sequence[int] | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    in_stock: bool | None = None,
    ordering: str = DEFAULT_PRODUCT_ORDERING,
    position: Sequence[Any] | None = None,
    forward: bool = True,
    size: int = 20,
) -> ProductPage:
    """One keyset page of the product list as rows, with what KeysetPagination would say.

    The same filters and order as ``product_list`` and the same page as
    ``KeysetPagination`` over it: ``position`` is the boundary row's values of
    the ordering fields (a decoded cursor), ``forward`` its direction.
    ``category_ids`` is a whole subtree (``category_subtree_id_list``).
    PostgreSQL only: the rows are ``RenderedRow`` written by emporium_product_rows().
    """
    fields = PRODUCT_ORDERINGS[ordering]
    descending = fields[0].startswith("-")
    names = [field.lstrip("-") for field in fields]
    # Walking backward reads the ordering reversed, then turns the rows round.
    reverse = descending == forward
    keyset, min_price, max_price = _bounds(names, position, reverse, min_price, max_price)
    clauses: list[str] = []
    params: list[Any] = []
    if category_ids is not None:
        if len(category_ids) == 1:
            clauses.append("p.category_id = %s")
            params.append(category_ids[0])
        else:  # one array parameter: one statement to prepare, whatever the subtree
            clauses.append("p.category_id = ANY(%s::bigint[])")
            params.append(list(category_ids))
    if min_price is not None:
        clauses.append("p.price >= %s")
        params.append(_db_value("price", min_price))
    if max_price is not None:
        clauses.append("p.price <= %s")
        params.append(_db_value("price", max_price))
    if in_stock is True:
        clauses.append("p.stock_quantity > 0")
    elif in_stock is False:
        clauses.append("p.stock_quantity = 0")
    quote = connection.ops.quote_name
    if keyset:
        assert position is not None  # noqa: S101 - _bounds keeps the keyset only with one
        columns = ", ".join(f"p.{quote(name)}" for name in names)
        clauses.append(f"({columns}) {'<' if reverse else '>'} (%s, %s)")
        params.extend(_db_value(name, value) for name, value in zip(names, position, strict=True))
    direction = "DESC" if reverse else "ASC"
    order = ", ".join(f"p.{quote(name)} {direction}" for name in names)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"{where} ORDER BY {order} LIMIT %s"
    # The rows are written by the function (its query stays prepared). The ids
    # are prepared too where one plan suits every value: the ordering's index,
    # or a leaf category's. A price range under another ordering, or a subtree
    # of several categories, is planned for its values: how many rows match
    # decides between walking the ordering and sorting the matches.
    ranged = (min_price is not None or max_price is not None) and names[0] != "price"
    several = category_ids is not None and len(category_ids) > 1
    ids = f"SELECT p.id FROM {quote(Product._meta.db_table)} AS p{sql}"  # noqa: S608 - constants
    make = RenderedRow._make
    rows = [
        make(row)
        for row in fetch_prepared(
            f"{_RENDERED}(ARRAY({ids}))", [*params, size + 1], prepare=not (ranged or several)
        )
    ]
    has_more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
        return ProductPage(rows=rows, has_next=True, has_previous=has_more)
    return ProductPage(rows=rows, has_next=has_more, has_previous=position is not None)


def product_row(*, product_id: int) -> Any:
    """One product's RenderedRow, or None (PostgreSQL only, as ``product_page_rows``)."""
    found = fetch_prepared(f"{_RENDERED}(ARRAY[%s]::bigint[])", [product_id])
    return RenderedRow._make(found[0]) if found else None
