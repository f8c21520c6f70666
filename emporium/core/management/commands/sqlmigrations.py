"""Writes a migration for every ``<app>/sql/*.sql`` file that changed since its newest snapshot.

    manage.py sqlmigrations [app_label ...] [--check] [--dry-run] [--name NAME]

``--check`` writes nothing and exits with status 1 while any file differs from
its newest snapshot (CI runs it beside ``makemigrations --check``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.migrations.loader import MigrationLoader

from emporium.core.db.sql import sql_changes, sql_migrations_plan


class Command(BaseCommand):
    help = "Writes migrations that install the changed SQL files (emporium.core.db.sql)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("app_labels", nargs="*", help="Only these apps.")
        parser.add_argument(
            "--check", action="store_true", help="Exit 1 when a migration is missing."
        )
        parser.add_argument("--dry-run", action="store_true", help="Show, do not write.")
        parser.add_argument("--name", help="The new migration's name (after its number).")

    def handle(self, *args: Any, **options: Any) -> None:
        loader = MigrationLoader(None, ignore_no_migrations=True)
        changes = sql_changes(app_labels=options["app_labels"] or None, loader=loader)
        if not changes:
            self.stdout.write("No SQL file changed.")
            return
        try:
            planned = sql_migrations_plan(changes=changes, loader=loader, name=options["name"])
        except ValueError as error:
            raise CommandError(str(error)) from error
        for change in changes:
            state = "removed" if not change.sql else "changed" if change.previous else "new"
            self.stdout.write(f"{change.app_label}/sql/{change.name}.sql: {state}")
        if options["check"]:
            self.stderr.write("SQL files differ from their migrations: run manage.py sqlmigrations")
            raise SystemExit(1)
        for migration in planned:
            if options["dry_run"]:
                self.stdout.write(f"-- would write {migration.path}\n{migration.source}")
                continue
            migration.path.write_text(migration.source, encoding="utf-8")
            self.stdout.write(f"Wrote {migration.path}")
