"""Writing a chunk of valid rows by SKU: one statement, only the rows that differ.

The rule is one list, :data:`COMPARED_COLUMNS`: a new SKU is inserted; an
existing one is updated only when one of these columns differs
(``IS DISTINCT FROM``; SQLite spells it ``IS NOT``), and then ``updated_at``
moves. An unchanged row is not written at all: no new row version, no search
trigger, no cache bump. Each engine gets the statement built from that list;
only the spelling differs:

* PostgreSQL: ``INSERT ... SELECT FROM json_to_recordset(<the chunk>)``: the
  chunk travels as one JSON parameter (psycopg writes list parameters element
  by element in Python, three times the Python time of one JSON text), each
  row is looked up by SKU through its index, and only the rows that are new
  or differ reach the insert. A row names its category by an index into a
  second parameter, the chunk's category ids, so the chunk can be encoded
  (:func:`chunk_encode`, on the import's read-ahead thread) before its
  categories are resolved in the chunk's transaction;
* SQLite: ``INSERT ... VALUES (...), (...)`` in batches under its variable
  limit.

Both return the id of every row written and whether it was created (a fresh
row has ``created_at = updated_at``; an updated one kept its older
``created_at``). Rows are written in SKU order, so two imports touching the
same products lock them in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

from django.db import connection

from emporium.core.db.connection import server_cursor

# The columns an import sets, with the type PostgreSQL gives their array.
COMPARED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "text"),
    ("description", "text"),
    ("price", "numeric"),
    ("stock_quantity", "integer"),
    ("category_id", "bigint"),
    ("attributes", "jsonb"),
)
SQLITE_BATCH_ROWS = 500
# In the chunk's JSON a row names its category by this 1-based index into the
# category ids passed beside it.
CATEGORY_INDEX = "category_index"


@dataclass(frozen=True)
class UpsertRow:
    sku: str
    name: str
    description: str
    price: Decimal
    stock_quantity: int
    category_id: int
    attributes_json: str


@dataclass(frozen=True)
class Written:
    product_id: int
    created: bool


class RowValues(Protocol):
    """What a row to write offers: :class:`UpsertRow` and the import's validated row."""

    @property
    def sku(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def price(self) -> Decimal: ...
    @property
    def stock_quantity(self) -> int: ...
    @property
    def attributes_json(self) -> str: ...


Row = TypeVar("Row", bound=RowValues)
Category = TypeVar("Category", bound=Hashable)


@dataclass(frozen=True)
class EncodedChunk(Generic[Category]):
    """Rows as the chunk's JSON text, in SKU order, each SKU once; a row's category is
    ``categories[category_index - 1]``, whatever a category is to the caller (an id,
    a path to resolve)."""

    text: str
    categories: list[Category]
    rows: int


def chunk_encode(
    rows: Iterable[Row], *, category_of: Callable[[Row], Category]
) -> EncodedChunk[Category]:
    """The rows as one JSON array of objects, written in one call of the C encoder.

    A price goes as the text of its Decimal (exact), attributes as their JSON
    text, the category as its index. Needs no database.
    """
    ordered = sorted(rows, key=lambda row: row.sku)
    index: dict[Category, int] = {}
    objects: list[dict[str, Any]] = []
    for row in ordered:
        category = category_of(row)
        number = index.get(category)
        if number is None:
            number = index[category] = len(index) + 1
        objects.append({"sku": row.sku, CATEGORY_INDEX: number, **_json_values(row)})
    text = json.dumps(objects, ensure_ascii=False, separators=(",", ":"))
    return EncodedChunk(text=text, categories=list(index), rows=len(ordered))


def _json_values(row: RowValues) -> dict[str, Any]:
    """The row's compared columns but the category, as JSON text or numbers.

    (Spelt out for speed; a column of COMPARED_COLUMNS missing here would arrive
    as NULL and fail the column's NOT NULL.)
    """
    return {
        "name": row.name,
        "description": row.description,
        "price": str(row.price),
        "stock_quantity": row.stock_quantity,
        "attributes": row.attributes_json,
    }


def _names() -> list[str]:
    return [name for name, _ in COMPARED_COLUMNS]


def _postgresql_sql() -> str:
    names = _names()
    # The chunk carries every value as JSON text or number; a jsonb column travels
    # as the text of its JSON and is read back here.
    record = ", ".join(
        ["sku text"]
        + [
            f"{CATEGORY_INDEX} integer"
            if name == "category_id"
            else f"{name} {'text' if kind == 'jsonb' else kind}"
            for name, kind in COMPARED_COLUMNS
        ]
    )
    read = ", ".join(
        ["r.sku"]
        + [
            f"c.ids[r.{CATEGORY_INDEX}] AS category_id"
            if name == "category_id"
            else f"r.{name}::jsonb"
            if kind == "jsonb"
            else f"r.{name}"
            for name, kind in COMPARED_COLUMNS
        ]
    )
    listed = ", ".join(names)
    selected = ", ".join(f"r.{name}" for name in names)
    assignments = ", ".join(f"{name} = EXCLUDED.{name}" for name in names)
    current = ", ".join(f"p.{name}" for name in names)
    proposed = ", ".join(f"EXCLUDED.{name}" for name in names)
    # The rows that are new or differ are picked first: an unchanged row then never
    # reaches the INSERT, whose BEFORE INSERT triggers (the search vector) would
    # otherwise run for it. Each row's current version is found by the SKU index
    # (a LATERAL ... LIMIT 1 cannot become a join over the whole table, which the
    # planner would choose on a table it has no statistics for). The conflict
    # clause repeats the comparison for a row another writer changed in between.
    return f"""
        WITH categories AS (
            SELECT %s::bigint[] AS ids
        ), incoming AS (
            SELECT {read} FROM json_to_recordset(%s::json) AS r({record}), categories AS c
        ), differing AS (
            SELECT r.* FROM incoming AS r
              LEFT JOIN LATERAL (
                  SELECT p.id, {current} FROM catalog_product AS p
                   WHERE p.sku = r.sku LIMIT 1
              ) AS p ON true
             WHERE p.id IS NULL OR ({current}) IS DISTINCT FROM ({selected})
        )
        INSERT INTO catalog_product AS p
               (sku, {listed}, review_count, rating_total, created_at, updated_at)
        SELECT r.sku, {selected}, 0, 0, %s, %s FROM differing AS r ORDER BY r.sku
        ON CONFLICT (sku) DO UPDATE SET {assignments}, updated_at = EXCLUDED.updated_at
         WHERE ({current}) IS DISTINCT FROM ({proposed})
        RETURNING p.id, p.created_at = p.updated_at
    """  # noqa: S608 - only the constant column list is interpolated


def _sqlite_sql(rows: int) -> str:
    names = _names()
    placeholders = "(" + ", ".join(["%s"] * (len(names) + 5)) + ")"
    assignments = ", ".join(f"{name} = excluded.{name}" for name in names)
    current = ", ".join(
        f"json(catalog_product.{name})" if name == "attributes" else f"catalog_product.{name}"
        for name in names
    )
    proposed = ", ".join(
        f"json(excluded.{name})" if name == "attributes" else f"excluded.{name}" for name in names
    )
    return f"""
        INSERT INTO catalog_product
               (sku, {", ".join(names)}, review_count, rating_total, created_at, updated_at)
        VALUES {", ".join([placeholders] * rows)}
        ON CONFLICT (sku) DO UPDATE SET {assignments}, updated_at = excluded.updated_at
         WHERE ({current}) IS NOT ({proposed})
        RETURNING id, created_at = updated_at
    """  # noqa: S608 - only the constant column list is interpolated


_POSTGRESQL_SQL = _postgresql_sql()


def products_upsert(*, rows: Sequence[UpsertRow], now: datetime) -> list[Written]:
    """Inserts new SKUs and updates changed ones; returns the rows actually written.

    ``rows`` must hold each SKU once. Runs on the caller's transaction.
    """
    chunk = chunk_encode(rows, category_of=lambda row: row.category_id)
    return products_upsert_encoded(chunk=chunk, category_ids=chunk.categories, now=now)


def products_upsert_encoded(
    *, chunk: EncodedChunk[Any], category_ids: Sequence[int], now: datetime
) -> list[Written]:
    """:func:`products_upsert` of an encoded chunk; ``category_ids[n]`` is the id of
    ``chunk.categories[n]``."""
    if not chunk.rows:
        return []
    if connection.vendor == "postgresql":
        # Bound on the server and prepared once per connection: the chunk travels
        # apart from the statement instead of being written into a new, large SQL
        # text for every chunk.
        with server_cursor() as cursor:
            cursor.execute(_POSTGRESQL_SQL, [list(category_ids), chunk.text, now, now])
            return [Written(int(pk), bool(created)) for pk, created in cursor.fetchall()]
    # SQLite (the embedded profile) reads the same chunk back into its values.
    names = _names()
    ordered = json.loads(chunk.text)
    for values in ordered:
        values["category_id"] = category_ids[values.pop(CATEGORY_INDEX) - 1]
    with connection.cursor() as cursor:
        written: list[Written] = []
        stamp = connection.ops.adapt_datetimefield_value(now)
        for start in range(0, len(ordered), SQLITE_BATCH_ROWS):
            batch = ordered[start : start + SQLITE_BATCH_ROWS]
            parameters: list[Any] = []
            for values in batch:
                parameters += [values["sku"], *(values[name] for name in names)]
                parameters += [0, 0, stamp, stamp]
            cursor.execute(_sqlite_sql(len(batch)), parameters)
            written += [Written(int(pk), bool(created)) for pk, created in cursor.fetchall()]
        return written
