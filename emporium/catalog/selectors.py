from __future__ import annotations

import datetime
import functools
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, QuerySet
from django.db.models.expressions import Col

from emporium.catalog.models import Category, Product
from emporium.core.errors import InvalidInput
from emporium.core.db.prepared import fetch_prepared

PRODUCT_ORDERINGS = {
    "price": ("price", "id"),
    "-price": ("-price", "-id"),
    "name": ("name", "id"),
    "-name": ("-name", "-id"),
    "created_at": ("created_at", "id"),
    "-created_at": ("-created_at", "-id"),
}
DEFAULT_PRODUCT_ORDERING = "-created_at"


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


# -- rows for the lean read path (docs/adr/0016-lean-catalog-reads.md) -----------------
#
# The product list and detail, read as plain rows with hand-written SQL: no
# queryset to build and compile, no model instances. The columns are the ones
# ``serializers.product_row_representation`` reads, in this order.

PRODUCT_ROW_FIELDS = (
    "id",
    "sku",
    "name",
    "description",
    "price",
    "stock_quantity",
    "category_id",
    "category_name",  # from the category table
    "attributes",
    "review_count",
    "rating_total",
    "created_at",
    "updated_at",
)
ProductRow = Sequence[Any]
# Where each ordering field sits in a row (the cursor is built from these).
PRODUCT_ROW_INDEX = {name: index for index, name in enumerate(PRODUCT_ROW_FIELDS)}

# Row-value comparison, (a, id) > (x, y), is the keyset condition for all six
# orderings because each orders both of its columns the same way; it is one
# index range on PostgreSQL and SQLite alike.
for _ordering in PRODUCT_ORDERINGS.values():
    if len({field.startswith("-") for field in _ordering}) != 1:
        raise ValueError(f"ordering {_ordering} mixes directions")


def _product_field(name: str) -> Field[Any, Any]:
    field = Product._meta.get_field("category" if name == "category_id" else name)
    assert isinstance(field, Field)  # noqa: S101 - concrete columns only
    return field


def _columns() -> list[Col]:
    table = Product._meta.db_table
    columns = []
    for name in PRODUCT_ROW_FIELDS:
        if name == "category_name":
            columns.append(Category._meta.get_field("name").get_col(Category._meta.db_table))
        else:
            columns.append(_product_field(name).get_col(table))
    return columns


Converter = tuple[int, list[Callable[..., Any]], Col]
# The backend's and the fields' converters for a row (what values() would apply),
# worked out once per connection: on PostgreSQL only the JSON column has one.
_converters_by_connection: weakref.WeakKeyDictionary[BaseDatabaseWrapper, list[Converter]] = (
    weakref.WeakKeyDictionary()
)


def _converters() -> list[Converter]:
    wrapper = connections[DEFAULT_DB_ALIAS]  # this thread's, not the proxy
    found = _converters_by_connection.get(wrapper)
    if found is None:
        compiler = Product.objects.all().query.get_compiler(connection=wrapper)
        found = [
            (index, functions, column)
            for index, (functions, column) in compiler.get_converters(_columns()).items()
        ]
        _converters_by_connection[wrapper] = found
    return found


def _fetch(sql: str, params: Sequence[Any]) -> list[ProductRow]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows: list[Any] = cursor.fetchall()
    converters = _converters()
    if not converters:
        return rows
    converted: list[ProductRow] = []
    for raw in rows:
        row = list(raw)
        for index, functions, column in converters:
            value = row[index]
            for function in functions:
                value = function(value, column, connection)
            row[index] = value
        converted.append(row)
    return converted


def _db_value(name: str, value: Any) -> Any:
    """A Python value as the ORM would send it for this column (SQLite stores text dates)."""
    return _product_field(name).get_db_prep_value(value, connection, prepared=False)


@functools.cache
def _select_sql(vendor: str) -> str:
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    product, category = quote(Product._meta.db_table), quote(Category._meta.db_table)
    columns = ", ".join(
        "c.name" if name == "category_name" else f"p.{quote(name)}" for name in PRODUCT_ROW_FIELDS
    )
    return f"SELECT {columns} FROM {product} AS p JOIN {category} AS c ON c.id = p.category_id"  # noqa: S608 - constants only


def _select() -> str:
    return _select_sql(connection.vendor)


# -- products written by PostgreSQL (docs/adr/0020-lean-gateway-and-rendered-rows.md) ----
#
# On PostgreSQL the lean path has emporium_product_rows() (migration
# catalog/0003) write each product's JSON: a rendered row is the text before the
# attributes, the attributes as stored JSON text, the text after them, then
# price, name, created_at (microseconds since 1970: ``rendered_position``) and id
# for the cursor.

RenderedRow = Sequence[Any]
RENDERED_INDEX = {"price": 3, "name": 4, "created_at": 5, "id": 6}
_RENDERED = (
    "SELECT head, attributes, tail, price, name, created_at_us, id FROM emporium_product_rows"
)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def rendered_position(row: RenderedRow, fields: Sequence[str]) -> list[Any]:
    """A rendered row's values of the ordering ``fields``, as a cursor holds them."""
    values = []
    for field in fields:
        name = field.lstrip("-")
        value = row[RENDERED_INDEX[name]]
        if name == "created_at":
            value = _EPOCH + datetime.timedelta(microseconds=value)
        values.append(value)
    return values


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
    rows: list[ProductRow]
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
    rendered: bool = False,
) -> ProductPage:
    """One keyset page of the product list as rows, with what KeysetPagination would say.

    The same filters and order as ``product_list`` and the same page as
    ``KeysetPagination`` over it: ``position`` is the boundary row's values of
    the ordering fields (a decoded cursor), ``forward`` its direction.
    ``category_ids`` is a whole subtree (``category_subtree_id_list``).
    ``rendered`` (PostgreSQL) gives rendered rows (``RENDERED_INDEX``).
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
        elif rendered:  # one array parameter: one statement to prepare, whatever the subtree
            clauses.append("p.category_id = ANY(%s::bigint[])")
            params.append(list(category_ids))
        else:
            clauses.append(f"p.category_id IN ({', '.join(['%s'] * len(category_ids))})")
            params.extend(category_ids)
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
    rows: list[ProductRow]
    if rendered:
        # The rows are written by the function (its query stays prepared). The ids
        # are prepared too where one plan suits every value: the ordering's index,
        # or a leaf category's. A price range under another ordering, or a subtree
        # of several categories, is planned for its values: how many rows match
        # decides between walking the ordering and sorting the matches.
        ranged = (min_price is not None or max_price is not None) and names[0] != "price"
        several = category_ids is not None and len(category_ids) > 1
        ids = f"SELECT p.id FROM {quote(Product._meta.db_table)} AS p{sql}"  # noqa: S608 - constants
        rows = list(
            fetch_prepared(
                f"{_RENDERED}(ARRAY({ids}))",
                [*params, size + 1],
                prepare=not (ranged or several),
            )
        )
    else:
        rows = _fetch(f"{_select()}{sql}", [*params, size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
        return ProductPage(rows=rows, has_next=True, has_previous=has_more)
    return ProductPage(rows=rows, has_next=has_more, has_previous=position is not None)


def product_row(*, product_id: int, rendered: bool = False) -> ProductRow | None:
    """One product's row, or None; ``rendered`` as for ``product_page_rows``."""
    found: list[ProductRow]
    if rendered:
        found = list(fetch_prepared(f"{_RENDERED}(ARRAY[%s]::bigint[])", [product_id]))
    else:
        found = _fetch(f"{_select()} WHERE p.id = %s", [product_id])
    return found[0] if found else None
