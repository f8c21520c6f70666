from __future__ import annotations

import os

import pytest
from django.db import connection

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
