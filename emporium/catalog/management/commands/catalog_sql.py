"""Writes emporium/catalog/sql/product_rows.sql from the product declaration.

    manage.py catalog_sql [--check]

The file is generated from ``emporium.catalog.representation.PRODUCT_FIELDS``;
after writing it, ``manage.py sqlmigrations catalog`` adds the migration that
installs it. ``--check`` writes nothing and exits with status 1 when the file
is not what the declaration generates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser

from emporium.catalog.representation import PRODUCT_ROWS_SQL_NAME, product_rows_sql


def product_rows_path() -> Path:
    return Path(apps.get_app_config("catalog").path) / "sql" / f"{PRODUCT_ROWS_SQL_NAME}.sql"


class Command(BaseCommand):
    help = "Writes catalog/sql/product_rows.sql from catalog.representation.PRODUCT_FIELDS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="Exit 1 when the file is not up to date."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = product_rows_path()
        wanted = product_rows_sql()
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == wanted:
            self.stdout.write(f"{path} is up to date.")
            return
        if options["check"]:
            self.stderr.write(f"{path} differs from PRODUCT_FIELDS: run manage.py catalog_sql")
            raise SystemExit(1)
        path.write_text(wanted, encoding="utf-8")
        self.stdout.write(f"Wrote {path}; now run manage.py sqlmigrations catalog")
