"""The one declaration of a product's fields, and what is derived from it."""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from rest_framework.renderers import JSONRenderer

from emporium.catalog.models import Product
from emporium.catalog.representation import (
    PRODUCT_FIELD_NAMES,
    PRODUCT_FIELDS,
    PRODUCT_READ_ONLY_FIELD_NAMES,
    product_representation,
    product_rows_sql,
)
from emporium.catalog.serializers import ProductSerializer
from emporium.core.db.sql import sql_snapshots
from emporium.core.tests.factories import ProductFactory


def _sql_file() -> Path:
    return Path(apps.get_app_config("catalog").path) / "sql" / "product_rows.sql"


def test_the_sql_file_is_what_the_declaration_generates() -> None:
    """A field added to PRODUCT_FIELDS shows as a diff here: run manage.py catalog_sql."""
    assert _sql_file().read_text(encoding="utf-8") == product_rows_sql()


def test_the_newest_migration_installs_the_sql_file() -> None:
    """Otherwise: manage.py sqlmigrations catalog."""
    assert sql_snapshots()[("catalog", "product_rows")] == product_rows_sql()


def test_the_generated_function_writes_every_declared_field() -> None:
    sql = product_rows_sql()
    for name in PRODUCT_FIELD_NAMES:
        assert f'"{name}":' in sql


def test_the_serializer_fields_are_the_declaration() -> None:
    fields = ProductSerializer().fields
    assert list(fields) == list(PRODUCT_FIELD_NAMES)
    assert [name for name, field in fields.items() if field.read_only] == list(
        PRODUCT_READ_ONLY_FIELD_NAMES
    )
    assert len(PRODUCT_FIELDS) == len(set(PRODUCT_FIELD_NAMES))


@pytest.mark.django_db
def test_the_python_rendering_gives_the_bytes_of_the_serializer() -> None:
    ProductFactory(price=Decimal("0.5"), stock_quantity=0, attributes={})
    ProductFactory(
        price=Decimal("9999999999.99"),
        attributes={"colour": "red", "sizes": [1, 2], "nested": {"a": None}, "ünï": "ç"},
        description='line\nbreak "quoted" <tag>',
    )
    rated = ProductFactory(price=Decimal("12.30"))
    odd_time = datetime.datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=datetime.UTC)
    Product.objects.filter(pk=rated.pk).update(review_count=3, rating_total=11, created_at=odd_time)
    render = JSONRenderer().render
    products = list(Product.objects.select_related("category").order_by("id"))
    assert len(products) == 3
    for product in products:
        expected = render(ProductSerializer(product).data)
        assert render(product_representation(product)) == expected
