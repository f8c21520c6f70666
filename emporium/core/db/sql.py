"""Database code kept as ``*.sql`` files beside the app that owns it.

A function or trigger that PostgreSQL runs is source code: it lives in
``<app>/sql/<name>.sql`` (``emporium/orders/sql/order_place.sql``), is reviewed
and linted as such, and reaches the database through a migration. A file has
two parts: the statements that install it, then, after a line reading exactly
``-- uninstall``, the statements that remove everything the first part created.

Migrations never read the files. :class:`InstallSQL` carries the text of the
file as it was when the migration was written (a snapshot) and the snapshot
before it, so replaying history on a new database installs every version in
turn, and a migration run backwards puts the previous version back. Going
forwards it runs the previous version's uninstall part, then the new install
part; backwards, the new uninstall part, then the previous install part.

``manage.py sqlmigrations`` writes one migration per app whose files differ
from their newest snapshot; ``manage.py sqlmigrations --check`` (and the test
suite) fail while any does. A migration depends on the newest migration of
every app whose tables the SQL names, so those tables exist when it runs.
Values the Python code owns (status names, event types) are passed to the SQL
functions as arguments, never written into the SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.apps import apps
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState

SQL_DIRECTORY = "sql"
UNINSTALL_MARKER = "-- uninstall"
_DEFAULT_VENDOR = "postgresql"


@dataclass(frozen=True)
class SQLParts:
    """A SQL file's text split at the ``-- uninstall`` line."""

    install: str
    uninstall: str


def sql_text_split(*, text: str) -> SQLParts:
    """The install and uninstall parts of ``text``; an empty text has neither."""
    install: list[str] = []
    uninstall: list[str] = []
    target = install
    seen_marker = False
    for line in text.splitlines(keepends=True):
        if line.strip() == UNINSTALL_MARKER:
            if seen_marker:
                raise ValueError(f"More than one {UNINSTALL_MARKER!r} line.")
            seen_marker = True
            target = uninstall
            continue
        target.append(line)
    if text.strip() and not seen_marker:
        raise ValueError(f"No {UNINSTALL_MARKER!r} line: say how to remove what is installed.")
    return SQLParts(install="".join(install).strip(), uninstall="".join(uninstall).strip())


@dataclass(frozen=True)
class SQLFile:
    """One ``<app>/sql/<name>.sql`` file."""

    app_label: str
    name: str
    path: Path

    def read(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def parts(self) -> SQLParts:
        return sql_text_split(text=self.read())


def sql_files(*, app_labels: Iterable[str] | None = None) -> list[SQLFile]:
    """Every SQL file of the installed apps (or of ``app_labels``), by app and name."""
    wanted = set(app_labels) if app_labels is not None else None
    found = []
    for config in apps.get_app_configs():
        if wanted is not None and config.label not in wanted:
            continue
        directory = Path(config.path) / SQL_DIRECTORY
        for path in sorted(directory.glob("*.sql")):
            found.append(SQLFile(app_label=config.label, name=path.stem, path=path))
    return found


def sql_file_read(*, app_label: str, name: str) -> str:
    """The current text of ``<app>/sql/<name>.sql``."""
    config = apps.get_app_config(app_label)
    return (Path(config.path) / SQL_DIRECTORY / f"{name}.sql").read_text(encoding="utf-8")


class InstallSQL(Operation):
    """Installs a snapshot of one SQL file, replacing the snapshot before it.

    ``sql`` is the file's text when the migration was written ("" when the file
    was removed); ``previous`` the newest earlier snapshot ("" for the first).
    Runs on ``vendor`` databases only; elsewhere the app keeps a Python twin.
    """

    reversible = True
    reduces_to_sql = True
    elidable = False

    def __init__(
        self, *, name: str, sql: str, previous: str = "", vendor: str = _DEFAULT_VENDOR
    ) -> None:
        self.name = name
        self.sql = sql
        self.previous = previous
        self.vendor = vendor
        # Refuse a malformed snapshot when the migration is loaded, not when it runs.
        self._new = sql_text_split(text=sql)
        self._old = sql_text_split(text=previous)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {"name": self.name, "sql": self.sql}
        if self.previous:
            kwargs["previous"] = self.previous
        if self.vendor != _DEFAULT_VENDOR:
            kwargs["vendor"] = self.vendor
        return (self.__class__.__name__, [], kwargs)

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        """Database code is not part of the model state."""

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        self._run(schema_editor, [self._old.uninstall, self._new.install])

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        self._run(schema_editor, [self._new.uninstall, self._old.install])

    def _run(self, schema_editor: BaseDatabaseSchemaEditor, scripts: list[str]) -> None:
        if schema_editor.connection.vendor != self.vendor:
            return
        for script in scripts:
            if script:
                # No parameters: sent as one simple query, so '%' needs no escaping
                # and a script may hold several statements.
                schema_editor.execute(script, params=None)

    def describe(self) -> str:
        if not self.sql:
            return f"Remove SQL file {self.name}"
        return f"Install SQL file {self.name}"

    @property
    def migration_name_fragment(self) -> str:
        return f"sql_{self.name}"


# -- Snapshots and the migrations that carry them ---------------------------------------


def sql_snapshots(*, loader: MigrationLoader | None = None) -> dict[tuple[str, str], str]:
    """The newest snapshot of every SQL file a migration installed, by (app, name)."""
    loader = loader or MigrationLoader(None, ignore_no_migrations=True)
    graph = loader.graph
    newest: dict[tuple[str, str], str] = {}
    for leaf in graph.leaf_nodes():
        for key in graph.forwards_plan(leaf):
            if key[0] != leaf[0]:
                continue
            for operation in graph.nodes[key].operations:
                if isinstance(operation, InstallSQL):
                    newest[(key[0], operation.name)] = operation.sql
    return newest


@dataclass(frozen=True)
class SQLChange:
    """A SQL file whose text is not its newest snapshot ("" for a removed file)."""

    app_label: str
    name: str
    sql: str
    previous: str


def sql_changes(
    *, app_labels: Iterable[str] | None = None, loader: MigrationLoader | None = None
) -> list[SQLChange]:
    """The SQL files that need a migration, removed ones included."""
    wanted = set(app_labels) if app_labels is not None else None
    snapshots = sql_snapshots(loader=loader)
    changes = []
    present = set()
    for sql_file in sql_files(app_labels=wanted):
        present.add((sql_file.app_label, sql_file.name))
        text = sql_file.read()
        sql_text_split(text=text)  # a file without its uninstall part is an error now
        previous = snapshots.get((sql_file.app_label, sql_file.name), "")
        if text != previous:
            changes.append(SQLChange(sql_file.app_label, sql_file.name, text, previous))
    for (app_label, name), previous in sorted(snapshots.items()):
        if (app_label, name) in present or not previous:
            continue
        if wanted is None or app_label in wanted:
            changes.append(SQLChange(app_label, name, "", previous))
    return changes


def sql_tables_named(*, text: str) -> set[str]:
    """The app labels whose model tables ``text`` names (its migration depends on them)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text.lower()))
    return {
        model._meta.app_label
        for model in apps.get_models(include_auto_created=True)
        if model._meta.db_table.lower() in words
    }


def _python_string(text: str) -> str:
    """``text`` as a Python literal, a raw triple-quoted one wherever that is exact."""
    if text and '"""' not in text and not text.endswith("\\") and "\r" not in text:
        return 'r"""' + text + '"""'
    return repr(text)


def sql_migration_render(
    *, app_label: str, changes: list[SQLChange], dependencies: list[tuple[str, str]]
) -> str:
    """The source of a migration installing ``changes`` of one app."""
    names = ", ".join(f"{app_label}/sql/{change.name}.sql" for change in changes)
    constants = []
    operations = []
    for change in changes:
        constant = re.sub(r"\W", "_", change.name).upper()
        constants.append(f"{constant} = {_python_string(change.sql)}\n")
        arguments = [f"name={change.name!r}", f"sql={constant}"]
        if change.previous:
            constants.append(f"{constant}_PREVIOUS = {_python_string(change.previous)}\n")
            arguments.append(f"previous={constant}_PREVIOUS")
        operations.append(f"        InstallSQL({', '.join(arguments)}),\n")
    depends = "".join(f"        ({label!r}, {name!r}),\n" for label, name in dependencies)
    return (
        f'"""Installs {names} as written when this migration was made.\n\n'
        "Written by manage.py sqlmigrations: the SQL below is a snapshot of the file\n"
        "(and of its version before), kept so that history replays exactly. Edit the\n"
        'file and run the command again; never edit this migration.\n"""\n\n'
        "from django.db import migrations\n\n"
        "from emporium.core.db.sql import InstallSQL\n\n"
        + "\n".join(constants)
        + "\n\nclass Migration(migrations.Migration):\n"
        "    dependencies = [\n" + depends + "    ]\n\n"
        "    operations = [\n" + "".join(operations) + "    ]\n"
    )


@dataclass(frozen=True)
class SQLMigration:
    app_label: str
    name: str
    path: Path
    source: str


def sql_migrations_plan(
    *, changes: list[SQLChange], loader: MigrationLoader, name: str | None = None
) -> list[SQLMigration]:
    """One new migration per app with changes, numbered after the app's newest one."""
    by_app: dict[str, list[SQLChange]] = {}
    for change in changes:
        by_app.setdefault(change.app_label, []).append(change)
    planned = []
    for app_label, app_changes in by_app.items():
        own_leaves = loader.graph.leaf_nodes(app_label)
        if len(own_leaves) > 1:
            raise ValueError(
                f"{app_label} has conflicting migrations {own_leaves}; merge them first."
            )
        dependencies = set(own_leaves)
        for change in app_changes:
            for other in sql_tables_named(text=change.sql + change.previous) - {app_label}:
                other_leaves = loader.graph.leaf_nodes(other)
                if other_leaves:
                    dependencies.add(max(other_leaves))
        number = int(own_leaves[0][1].split("_", 1)[0]) + 1 if own_leaves else 1
        fragment = name or "_".join(f"sql_{change.name}" for change in app_changes)
        migration_name = f"{number:04d}_{fragment}"[:80]
        module = loader.migrations_module(app_label)[0]
        if module is None:
            raise ValueError(f"{app_label} has no migrations module.")
        directory = Path(apps.get_app_config(app_label).path) / module.rsplit(".", 1)[-1]
        planned.append(
            SQLMigration(
                app_label=app_label,
                name=migration_name,
                path=directory / f"{migration_name}.py",
                source=sql_migration_render(
                    app_label=app_label, changes=app_changes, dependencies=sorted(dependencies)
                ),
            )
        )
    return planned
