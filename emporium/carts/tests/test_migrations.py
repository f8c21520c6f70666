"""The carts models and their migrations agree."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_carts_migrations_are_complete() -> None:
    output = StringIO()

    # --check exits non-zero (SystemExit) when a model change has no migration.
    call_command("makemigrations", "carts", "--check", "--dry-run", stdout=output)

    assert "No changes detected" in output.getvalue()
