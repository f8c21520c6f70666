"""SQLite specifics: the FTS5 table the triggers keep, and the MATCH expression."""

from __future__ import annotations

import pytest
from django.db import connection

from emporium.catalog import services as catalog_services
from emporium.core.tests.factories import CategoryFactory, ProductFactory
from emporium.search.backends import SpellingCheck, SqliteSearchBackend, split_last_word
from emporium.search.tests.support import require_vendor


def fts_row(product_id: int) -> tuple[str, str, str] | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, description, category_name FROM search_product_fts WHERE rowid = %s",
            [product_id],
        )
        row = cursor.fetchone()
    return None if row is None else tuple(row)


@pytest.mark.django_db
def test_fts_table_follows_every_write() -> None:
    require_vendor("sqlite")
    category = CategoryFactory(name="Kitchen")
    product = ProductFactory(name="Kettle", description="Boils water", category=category)
    assert fts_row(product.pk) == ("Kettle", "Boils water", "Kitchen")

    catalog_services.product_update(product=product, name="Teapot")
    assert fts_row(product.pk) == ("Teapot", "Boils water", "Kitchen")

    catalog_services.category_update(category=category, name="Cookware")
    assert fts_row(product.pk) == ("Teapot", "Boils water", "Cookware")

    other = CategoryFactory(name="Tea")
    catalog_services.product_update(product=product, category=other)
    assert fts_row(product.pk) == ("Teapot", "Boils water", "Tea")

    product_id = product.pk
    catalog_services.product_delete(product=product)
    assert fts_row(product_id) is None


@pytest.mark.parametrize(
    ("query", "expression"),
    [
        ("wireless head", '"wireless" "head"*'),
        ('"; DROP TABLE x; --', '"DROP" "TABLE" "x"'),
        ("usb-c cable", '"usb" "c" "cable"*'),
        ("!!!", None),
        ("", None),
        ("NEAR(a b) OR c*", '"NEAR" "a" "b" "OR" "c"'),
    ],
)
def test_match_expression_quotes_every_word(query: str, expression: str | None) -> None:
    assert SqliteSearchBackend.match_expression(query) == expression


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("wireless head", ("wireless", "head")),
        ("head", ("", "head")),
        ("red -wool", ("red -wool", None)),
        ('"wool scarf', ('"wool scarf', None)),
        ("silk or hat", ("silk or hat", None)),
        ("usb-c", ("usb-c", None)),
        ("shoe ", ("shoe ", None)),
    ],
)
def test_split_last_word(query: str, expected: tuple[str, str | None]) -> None:
    assert split_last_word(query) == expected


@pytest.mark.django_db
def test_spelling_check_offers_close_name_words_for_unknown_words_only() -> None:
    require_vendor("sqlite")
    ProductFactory(name="Wireless Headphones")
    ProductFactory(name="Electric Kettle")

    check = SqliteSearchBackend().spelling_check("headfones kettle ele")

    # "kettle" is a name word and "ele" the prefix of one being typed.
    assert check.options == {"headfones": ["headphones"]}
    assert check.corrected("headfones kettle ele") == "headphones kettle ele"
    assert not check.only_stop_words
    assert SqliteSearchBackend().spelling_check("zzzz qqqq") == SpellingCheck()
