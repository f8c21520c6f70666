from __future__ import annotations

import os
from decimal import Decimal

import pytest
from django.db import connection

from emporium.catalog.models import Product
from emporium.core.tests.factories import CategoryFactory, ProductFactory

REQUIRE_SERVICES = os.environ.get("EMPORIUM_REQUIRE_SERVICES") == "1"


def require_vendor(vendor: str) -> None:
    """Skips a test written for one engine when the suite runs on the other."""
    if connection.vendor != vendor:
        pytest.skip(f"this test exercises the {vendor} search backend")


def require_postgresql() -> None:
    """Fails when the real PostgreSQL is required but the suite is not on it."""
    if connection.vendor != "postgresql":
        if REQUIRE_SERVICES:
            pytest.fail("EMPORIUM_REQUIRE_SERVICES=1 but the suite is not running on PostgreSQL")
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")


def speakers_catalog() -> None:
    """Two speakers whose fields test rendering (escaping, a large price, a rating, no stock)."""
    category = CategoryFactory(name="Audio & <Video>")
    ProductFactory(
        name='Speaker "Ω" <b>',
        description="Loud speaker.",
        price=Decimal("1234567.5"),
        category=category,
    )
    reviewed = ProductFactory(name="Speaker stand", description="", stock_quantity=0)
    Product.objects.filter(pk=reviewed.pk).update(review_count=3, rating_total=13)
