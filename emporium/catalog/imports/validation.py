"""The rules an imported row must meet: one definition for the API and the command.

The limits are read from the models (name and SKU lengths, category depth and
name length, price digits), so a row that passes here also passes the
database's constraints, which stay the backstop.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from django.db.models import CharField, DecimalField

from emporium.catalog.models import MAX_CATEGORY_DEPTH, Category, Product

# The file's columns; the first ones are required. Aliases are what exports often say.
REQUIRED_COLUMNS = ("sku", "name", "price", "category")
OPTIONAL_COLUMNS = ("description", "stock", "attributes")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
COLUMN_ALIASES = {"stock_quantity": "stock", "category_path": "category"}
CATEGORY_SEPARATOR = ">"


def _max_length(model: type[Product | Category], name: str) -> int:
    return int(cast(CharField[Any, Any], model._meta.get_field(name)).max_length or 0)


SKU_MAX_LENGTH = _max_length(Product, "sku")
NAME_MAX_LENGTH = _max_length(Product, "name")
CATEGORY_NAME_MAX_LENGTH = _max_length(Category, "name")
_PRICE_FIELD = cast(DecimalField[Any, Any], Product._meta.get_field("price"))
PRICE_DECIMAL_PLACES: int = _PRICE_FIELD.decimal_places or 2
PRICE_LIMIT = Decimal(10) ** ((_PRICE_FIELD.max_digits or 12) - PRICE_DECIMAL_PLACES)
PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_DECIMAL_PLACES)
STOCK_MAX = 2_147_483_647  # PostgreSQL integer
_DIGITS = re.compile(r"^[+-]?\d+$")
VALUE_SHOWN_MAX = 200  # the part of a bad value an error keeps


@dataclass(frozen=True)
class ProductRow:
    number: int
    sku: str
    name: str
    description: str
    price: Decimal
    stock_quantity: int
    category_path: tuple[str, ...]
    attributes_json: str  # canonical text: sorted keys, no spaces


@dataclass(frozen=True)
class RowError:
    row_number: int
    column: str
    message: str
    value: str = ""


def columns_normalise(header: list[str]) -> list[str]:
    return [COLUMN_ALIASES.get(name, name) for name in header]


def columns_missing(columns: list[str]) -> list[str]:
    return [name for name in REQUIRED_COLUMNS if name not in columns]


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:VALUE_SHOWN_MAX]


def _text(value: Any) -> str | None:
    """A field as text: strings as they are, numbers written out, nothing else."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    return None


def _price(value: Any) -> tuple[Decimal | None, str | None]:
    if isinstance(value, bool) or value is None:
        return None, "is required"
    text = str(value).strip() if isinstance(value, int | float | Decimal | str) else None
    if not text:
        return None, "is required" if text == "" else "must be a number"
    try:
        price = Decimal(text)
    except InvalidOperation:
        return None, "must be a number"
    if not price.is_finite():
        return None, "must be a number"
    if price < 0:
        return None, "must not be negative"
    if price != price.quantize(PRICE_QUANTUM, rounding="ROUND_DOWN"):
        return None, f"must have at most {PRICE_DECIMAL_PLACES} decimal places"
    if price >= PRICE_LIMIT:
        return None, f"must be less than {PRICE_LIMIT}"
    return price.quantize(PRICE_QUANTUM), None


def _stock(value: Any) -> tuple[int | None, str | None]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0, None
    if isinstance(value, bool):
        return None, "must be a whole number"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        stock = value
    elif isinstance(value, str) and _DIGITS.match(value.strip()):
        stock = int(value.strip())
    else:
        return None, "must be a whole number"
    if stock < 0:
        return None, "must not be negative"
    if stock > STOCK_MAX:
        return None, f"must be at most {STOCK_MAX}"
    return stock, None


def _category(value: Any) -> tuple[tuple[str, ...] | None, str | None]:
    if not isinstance(value, str) or not value.strip():
        return None, "is required"
    parts = tuple(part.strip() for part in value.split(CATEGORY_SEPARATOR))
    if any(not part for part in parts):
        return None, f"has an empty level (levels are separated by {CATEGORY_SEPARATOR!r})"
    if len(parts) > MAX_CATEGORY_DEPTH:
        return None, f"must have at most {MAX_CATEGORY_DEPTH} levels"
    if any(len(part) > CATEGORY_NAME_MAX_LENGTH for part in parts):
        return None, f"has a level longer than {CATEGORY_NAME_MAX_LENGTH} characters"
    return parts, None


def _attributes(value: Any) -> tuple[str | None, str | None]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "{}", None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None, "must be a JSON object"
    if not isinstance(value, dict):
        return None, "must be a JSON object"
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if "\\u0000" in text:
        return None, "must not contain NUL characters"
    return text, None


def row_validate(number: int, fields: dict[str, Any]) -> ProductRow | list[RowError]:
    """The row as it will be written, or every problem it has (one per column)."""
    errors: list[RowError] = []

    def fail(column: str, message: str) -> None:
        errors.append(RowError(number, column, message, _shown(fields.get(column, ""))))

    texts: dict[str, str] = {}
    for column in ("sku", "name", "description"):
        text = _text(fields.get(column))
        if text is None:
            fail(column, "must be text")
        elif "\x00" in text:
            fail(column, "must not contain NUL characters")
        else:
            texts[column] = text.strip()
    sku, name = texts.get("sku"), texts.get("name")
    if sku == "":
        fail("sku", "is required")
    elif sku is not None and len(sku) > SKU_MAX_LENGTH:
        fail("sku", f"must be at most {SKU_MAX_LENGTH} characters")
    if name == "":
        fail("name", "is required")
    elif name is not None and len(name) > NAME_MAX_LENGTH:
        fail("name", f"must be at most {NAME_MAX_LENGTH} characters")
    price, problem = _price(fields.get("price"))
    if problem:
        fail("price", problem)
    stock, problem = _stock(fields.get("stock", fields.get("stock_quantity")))
    if problem:
        fail("stock", problem)
    path, problem = _category(fields.get("category", fields.get("category_path")))
    if problem:
        fail("category", problem)
    attributes, problem = _attributes(fields.get("attributes"))
    if problem:
        fail("attributes", problem)
    if errors or sku is None or name is None or price is None or stock is None:
        return errors
    if path is None or attributes is None:
        return errors
    return ProductRow(
        number=number,
        sku=sku,
        name=name,
        description=texts.get("description", ""),
        price=price,
        stock_quantity=stock,
        category_path=path,
        attributes_json=attributes,
    )
