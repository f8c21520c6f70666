"""SQL files as code (emporium.core.db.sql): snapshots, the migration operation, the lint.

The checks that need no database run on every profile: every ``<app>/sql``
file has a migration holding its current text, and no migration defines a
database function or trigger as migration text. On PostgreSQL each file is
installed again in a rolled-back transaction and checked: it must parse, what
it defines must already be installed with the same body (migrate brought the
database to the file's text), plpgsql_check must find no error in its
PL/pgSQL functions, and every migration that installs a file must run
backwards and forwards again.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState

from emporium.core.db.sql import (
    InstallSQL,
    SQLChange,
    sql_changes,
    sql_files,
    sql_migrations_plan,
    sql_tables_named,
    sql_text_split,
)

_DEFINES_FUNCTION = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(?:public\.)?(\w+)\s*\(", re.IGNORECASE
)
_DEFINES_TRIGGER = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?TRIGGER\s+(\w+)", re.IGNORECASE)
_DEFINES_ROUTINE = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE|TRIGGER)\b", re.IGNORECASE
)

# Migrations written before database code moved to <app>/sql files: they ran
# on every existing database and stay as they are. Any other migration that
# defines a function, procedure or trigger must do it with InstallSQL.
_WRITTEN_AS_MIGRATION_TEXT = {
    ("catalog", "0003_product_rows_function"),
    ("delivery", "0001_initial"),
    ("orders", "0004_order_place_function"),
    ("orders", "0006_order_place_sealed_details"),
    ("search", "0001_search_index"),
    ("search", "0002_search_vocabulary"),
}


# -- The file format ---------------------------------------------------------------------


def test_a_file_splits_at_its_uninstall_line() -> None:
    parts = sql_text_split(
        text="-- head\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
        "-- uninstall\nDROP FUNCTION IF EXISTS f();\n"
    )

    assert parts.install == "-- head\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';"
    assert parts.uninstall == "DROP FUNCTION IF EXISTS f();"
    assert sql_text_split(text="") == sql_text_split(text="\n")
    assert sql_text_split(text="").install == ""


@pytest.mark.parametrize(
    "text",
    [
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n",
        "A;\n-- uninstall\nB;\n-- uninstall\n",
    ],
    ids=["no uninstall part", "two uninstall lines"],
)
def test_a_file_without_exactly_one_uninstall_line_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="uninstall"):
        sql_text_split(text=text)


def test_every_sql_file_is_well_formed_and_beside_its_app() -> None:
    files = sql_files()

    assert ("orders", "order_place") in {(f.app_label, f.name) for f in files}
    for sql_file in files:
        assert sql_file.path.parent == Path(apps.get_app_config(sql_file.app_label).path) / "sql"
        parts = sql_file.parts
        assert parts.install, sql_file.path
        assert parts.uninstall, sql_file.path


# -- Snapshots -----------------------------------------------------------------------------


def test_every_sql_file_has_a_migration_with_its_current_text() -> None:
    changes = sql_changes()

    assert changes == [], (
        "These SQL files differ from their newest migration snapshot; "
        "run manage.py sqlmigrations: "
        + ", ".join(f"{change.app_label}/sql/{change.name}.sql" for change in changes)
    )


def test_no_migration_defines_database_code_as_migration_text() -> None:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    offenders = []
    for (app_label, name), migration in sorted(loader.disk_migrations.items()):
        if (app_label, name) in _WRITTEN_AS_MIGRATION_TEXT:
            continue
        snapshots = set()
        for operation in migration.operations:
            if isinstance(operation, InstallSQL):
                snapshots |= {operation.sql, operation.previous}
        module = sys.modules[migration.__module__]
        tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value not in snapshots
                and _DEFINES_ROUTINE.search(node.value)
            ):
                offenders.append(f"{app_label}.{name}")
                break

    assert offenders == [], (
        "Write database functions and triggers in <app>/sql/*.sql and run "
        f"manage.py sqlmigrations; these migrations hold them as text: {offenders}"
    )


def test_the_guard_sees_a_function_written_as_migration_text() -> None:
    statement = "create or replace function f() returns int language sql as 'select 1'"

    assert _DEFINES_ROUTINE.search(statement)
    assert _DEFINES_ROUTINE.search("CREATE TRIGGER t AFTER INSERT ON x")
    assert not _DEFINES_ROUTINE.search("CREATE INDEX i ON t (function_name)")


def test_a_new_migration_snapshots_the_file_and_depends_on_the_tables_it_names() -> None:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    text = (
        "CREATE FUNCTION emporium_probe() RETURNS bigint LANGUAGE sql"
        " AS 'SELECT count(*) FROM realtime_orderevent JOIN carts_cartitem ON true';\n"
        '-- uninstall\nDROP FUNCTION IF EXISTS emporium_probe(); -- """ \\\n'
    )
    (own_leaf,) = loader.graph.leaf_nodes("orders")
    (realtime_leaf,) = loader.graph.leaf_nodes("realtime")

    (planned,) = sql_migrations_plan(
        changes=[SQLChange("orders", "probe", text, previous="")], loader=loader
    )

    number = int(own_leaf[1].split("_")[0]) + 1
    assert planned.name == f"{number:04d}_sql_probe"
    assert planned.path.parent == Path(apps.get_app_config("orders").path) / "migrations"
    assert not planned.path.exists()
    namespace: dict[str, Any] = {}
    exec(compile(planned.source, str(planned.path), "exec"), namespace)  # noqa: S102
    migration = namespace["Migration"]
    (operation,) = migration.operations
    assert isinstance(operation, InstallSQL)
    assert (operation.name, operation.sql, operation.previous) == ("probe", text, "")
    assert own_leaf in migration.dependencies
    assert realtime_leaf in migration.dependencies
    assert {label for label, _ in migration.dependencies} == {"orders", "realtime", "carts"}


def test_the_tables_a_text_names_are_found_by_their_model() -> None:
    assert sql_tables_named(text="UPDATE catalog_product SET x = 1; -- orders_order") == {
        "catalog",
        "orders",
    }
    assert sql_tables_named(text="SELECT catalog_products_not_a_table") == set()


# -- On PostgreSQL -------------------------------------------------------------------------


@pytest.fixture
def _postgresql(database_url: str) -> None:
    assert connection.vendor == "postgresql"


@pytest.fixture
def rolled_back() -> Iterator[None]:
    """A transaction undone at the end, whatever the test installed or dropped in it."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def _function_bodies(names: set[str]) -> dict[tuple[str, str], str]:
    """(name, argument types) -> definition of the public functions with these names."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proname, pg_get_function_identity_arguments(oid), pg_get_functiondef(oid)"
            " FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            " AND proname = ANY(%s)",
            [sorted(names)],
        )
        return {(name, arguments): body for name, arguments, body in cursor.fetchall()}


def _triggers(names: set[str]) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger"
            " WHERE NOT tgisinternal AND tgname = ANY(%s)",
            [sorted(names)],
        )
        return dict(cursor.fetchall())


def _defined(text: str) -> tuple[set[str], set[str]]:
    return set(_DEFINES_FUNCTION.findall(text)), set(_DEFINES_TRIGGER.findall(text))


def _run_script(script: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(script)


@pytest.mark.django_db
@pytest.mark.usefixtures("_postgresql", "rolled_back")
@pytest.mark.parametrize("sql_file", sql_files(), ids=lambda f: f"{f.app_label}/{f.name}")
def test_a_sql_file_is_installed_as_written(sql_file: Any) -> None:
    parts = sql_file.parts
    functions, triggers = _defined(parts.install)
    assert functions or triggers, f"{sql_file.path} defines no function or trigger"
    migrated = (_function_bodies(functions), _triggers(triggers))
    assert {name for name, _ in migrated[0]} == functions, "not installed by migrate"
    assert set(migrated[1]) == triggers, "not installed by migrate"

    _run_script(parts.uninstall)
    assert (_function_bodies(functions), _triggers(triggers)) == ({}, {}), (
        "the uninstall part leaves something behind"
    )
    _run_script(parts.install)

    assert (_function_bodies(functions), _triggers(triggers)) == migrated, (
        "the database holds another version: run manage.py sqlmigrations, then migrate"
    )


def _plpgsql_check_available() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'plpgsql_check'")
        return cursor.fetchone() is not None


@pytest.mark.django_db
@pytest.mark.usefixtures("_postgresql", "rolled_back")
def test_plpgsql_check_finds_no_error_in_the_sql_files() -> None:
    """plpgsql_check resolves every table, column and type a PL/pgSQL body uses.

    PostgreSQL itself checks only the syntax of a body when it is created; a
    misspelt column would show up when a customer checks out. .ci/run installs
    the extension (Debian's postgresql-<version>-plpgsql-check); where the
    servers are required (EMPORIUM_REQUIRE_SERVICES=1) its absence fails.
    """
    if not _plpgsql_check_available():
        missing = "the plpgsql_check extension is not installed on this PostgreSQL server"
        if os.environ.get("EMPORIUM_REQUIRE_SERVICES") == "1":
            pytest.fail(f"EMPORIUM_REQUIRE_SERVICES=1 but {missing}")
        pytest.skip(missing)
    functions: set[str] = set()
    for sql_file in sql_files():
        functions |= _defined(sql_file.parts.install)[0]
    _run_script("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.proname, r.lineno, r.message, r.detail"
            " FROM pg_proc p"
            # A trigger function is checked against its table and the transition
            # tables (REFERENCING OLD/NEW TABLE) its trigger names.
            " LEFT JOIN LATERAL (SELECT t.tgrelid, t.tgoldtable, t.tgnewtable FROM pg_trigger t"
            "     WHERE t.tgfoid = p.oid ORDER BY t.oid LIMIT 1) t ON true,"
            " LATERAL plpgsql_check_function_tb("
            "     p.oid, coalesce(t.tgrelid, 0),"
            "     fatal_errors => false, other_warnings => false, performance_warnings => false,"
            "     oldtable => t.tgoldtable, newtable => t.tgnewtable"
            " ) r"
            " WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY(%s)"
            " AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')"
            " AND r.level = 'error'",
            [sorted(functions)],
        )
        errors = cursor.fetchall()

    assert errors == []


def _installing_migrations() -> list[tuple[str, str]]:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return sorted(
        key
        for key, migration in loader.disk_migrations.items()
        if any(isinstance(op, InstallSQL) for op in migration.operations)
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("_postgresql", "rolled_back")
@pytest.mark.parametrize("key", _installing_migrations(), ids="/".join)
def test_a_sql_migration_runs_backwards_and_forwards(key: tuple[str, str]) -> None:
    disk_migrations = MigrationLoader(None, ignore_no_migrations=True).disk_migrations
    migration = disk_migrations[key]
    operations = [op for op in migration.operations if isinstance(op, InstallSQL)]
    names = set()
    for operation in operations:
        for text in (operation.sql, operation.previous):
            names |= _defined(text)[0]
    state = ProjectState()
    # The database as this migration left it: later versions of its files are
    # undone first (a later one may have changed a function's signature).
    later = [
        op
        for other in _installing_migrations()
        if other[0] == key[0] and other[1] > key[1]
        for op in disk_migrations[other].operations
        if isinstance(op, InstallSQL) and op.name in {o.name for o in operations}
    ]
    with connection.schema_editor(atomic=False) as editor:
        for operation in reversed(later):
            operation.database_backwards(key[0], editor, state, state)
    before = _function_bodies(names)

    with connection.schema_editor(atomic=False) as editor:
        for operation in reversed(operations):
            operation.database_backwards(key[0], editor, state, state)
    backwards = _function_bodies(names)
    with connection.schema_editor(atomic=False) as editor:
        for operation in operations:
            operation.database_forwards(key[0], editor, state, state)

    expected_backwards = set()
    for operation in operations:
        expected_backwards |= _defined(sql_text_split(text=operation.previous).install)[0]
    assert {name for name, _ in backwards} == expected_backwards
    assert _function_bodies(names) == before


@pytest.mark.django_db
@pytest.mark.usefixtures("_postgresql", "rolled_back")
def test_an_operation_replaces_the_previous_version_and_puts_it_back() -> None:
    first = (
        "CREATE FUNCTION emporium_sql_probe(p integer) RETURNS integer"
        " LANGUAGE sql AS 'SELECT p + 1';\n-- uninstall\n"
        "DROP FUNCTION IF EXISTS emporium_sql_probe(integer);\n"
    )
    # Another signature and result type: CREATE OR REPLACE alone could not do it.
    second = (
        "CREATE FUNCTION emporium_sql_probe(p bigint, q text) RETURNS text"
        " LANGUAGE sql AS $$SELECT q || '%' || p$$;\n-- uninstall\n"
        "DROP FUNCTION IF EXISTS emporium_sql_probe(bigint, text);\n"
    )
    install_first = InstallSQL(name="probe", sql=first)
    install_second = InstallSQL(name="probe", sql=second, previous=first)
    remove = InstallSQL(name="probe", sql="", previous=second)
    state = ProjectState()

    def installed() -> list[str]:
        return sorted(arguments for _, arguments in _function_bodies({"emporium_sql_probe"}))

    with connection.schema_editor(atomic=False) as editor:
        install_first.database_forwards("core", editor, state, state)
        assert installed() == ["p integer"]
        install_second.database_forwards("core", editor, state, state)
        assert installed() == ["p bigint, q text"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT emporium_sql_probe(7, 'x')")
            assert cursor.fetchone() == ("x%7",)
        remove.database_forwards("core", editor, state, state)
        assert installed() == []
        remove.database_backwards("core", editor, state, state)
        assert installed() == ["p bigint, q text"]
        install_second.database_backwards("core", editor, state, state)
        assert installed() == ["p integer"]
        install_first.database_backwards("core", editor, state, state)
        assert installed() == []


def test_an_operation_deconstructs_to_what_it_was_given() -> None:
    operation = InstallSQL(name="probe", sql="A;\n-- uninstall\nB;\n", previous="")

    assert operation.deconstruct() == (
        "InstallSQL",
        [],
        {"name": "probe", "sql": "A;\n-- uninstall\nB;\n"},
    )
    assert operation.describe() == "Install SQL file probe"
    assert operation.migration_name_fragment == "sql_probe"
