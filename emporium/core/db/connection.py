"""How every PostgreSQL connection is tuned, and the cursor that binds on the server.

Django's psycopg backend binds parameters on the client and opens its
connections with ``prepare_threshold=None`` (prepared statements off, for
PgBouncer's sake), so PostgreSQL parses and plans every statement it is sent.
Two kinds of statement are worth preparing: the catalog's hot reads
(:mod:`emporium.core.db.prepared`) and telemetry's one ingestion statement
(planning it cost about 0.9 ms per batch). Both run on Django's own connection
through :func:`server_cursor`, which asks psycopg to prepare them.

Asking does nothing unless the connection has a threshold, and psycopg keeps
at most ``prepared_max`` statements per connection. :func:`connection_tune` sets
both, once, as the connection is handed to Django, whichever code then uses it
first: the project's database backend calls it for every connection it opens
or borrows from psycopg's pool. The threshold is "only when asked", so
Django's own client-binding cursors, which never ask, stay unprepared.

``DATABASE_PREPARED_STATEMENTS`` off (a pooler that cannot keep prepared
statements, such as PgBouncer in transaction mode before 1.21) leaves the
connection as Django opened it: nothing is prepared, and a server-binding
cursor sends its statements unnamed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

# Statements psycopg keeps per connection; the catalog list alone has a few
# hundred shapes (ordering x filters x direction), more than psycopg's 100.
PREPARED_MAX = 1024
# Never prepare a statement on psycopg's own count (its automatic preparation
# after five runs); only statements run with ``prepare=True``.
PREPARE_ONLY_WHEN_ASKED = 1 << 30


def statements_prepared() -> bool:
    """Whether statements that ask to be prepared are (the deployment's setting)."""
    return bool(settings.DATABASE_PREPARED_STATEMENTS)


def connection_tune(*, connection: psycopg.Connection[Any]) -> None:
    """Applies the project's settings to a psycopg connection Django is about to use.

    Idempotent and cheap (two attribute writes): the backend calls it each time
    a connection is opened or lent by the pool.
    """
    if statements_prepared():
        connection.prepare_threshold = PREPARE_ONLY_WHEN_ASKED
        connection.prepared_max = PREPARED_MAX
    else:
        connection.prepare_threshold = None


class _PreparingCursor(psycopg.Cursor[Any]):
    """Prepares every statement it runs: Django's cursor wrapper passes no options."""

    def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
        options.setdefault("prepare", True)
        return super().execute(query, params, **options)


class _ServerCursorDebugWrapper(CursorDebugWrapper):
    """Logs the statement as it was given.

    Django's debug wrapper asks the cursor what it last ran, and psycopg has no
    answer for a statement it ran prepared: the log would hold None.
    """

    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(sql, params):
            return CursorWrapper.execute(self, sql, params)

    def executemany(self, sql: Any, param_list: Any) -> Any:
        with self.debug_sql(sql, param_list, many=True):
            return CursorWrapper.executemany(self, sql, param_list)


def server_cursor(*, prepare: bool = True, using: str = DEFAULT_DB_ALIAS) -> CursorWrapper:
    """A cursor on Django's connection that binds parameters on the server (PostgreSQL only).

    Parameters travel apart from the SQL, in text or binary format (binary
    arrays need this), and with ``prepare`` and prepared statements enabled
    every statement it runs is prepared once per connection. It is Django's
    connection, transaction and error translation; the cursor is wrapped as
    Django wraps its own, so query logging, ``assertNumQueries`` and execute
    wrappers see what it runs.
    """
    wrapper = connections[using]
    wrapper.close_if_health_check_failed()
    wrapper.ensure_connection()
    wrapper.validate_thread_sharing()
    cursor_class = _PreparingCursor if prepare and statements_prepared() else psycopg.Cursor
    with wrapper.wrap_database_errors:
        # Typed as Any: django-stubs declares the wrapped cursor as Django's own wrapper.
        cursor: Any = cursor_class(wrapper.connection)
    if wrapper.queries_logged:
        return _ServerCursorDebugWrapper(cursor, wrapper)
    return wrapper.make_cursor(cursor)


# The planner's methods a statement may turn off for its transaction.
_PLANNER_METHODS = frozenset({"bitmapscan", "seqscan", "sort", "hashjoin", "mergejoin"})


@contextmanager
def planner_methods_off(*methods: str, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """A transaction whose statements are planned without ``methods`` (PostgreSQL).

    For a statement whose right plan must not depend on the table's
    statistics: a queue table that grew by a million rows since it was last
    analysed looks nearly empty to the planner, which may then choose to read
    and sort every row to return the first few hundred. Opens a transaction,
    or inside one already open puts the settings back as they were when the
    block ends normally (after an error the transaction is rolled back, and
    the settings with it). Other databases get the transaction only.
    """
    unknown = set(methods) - _PLANNER_METHODS
    if unknown:
        raise ValueError(f"unknown planner methods: {sorted(unknown)}")
    connection = connections[using]
    if connection.vendor != "postgresql":
        with transaction.atomic(using=using):
            yield
        return
    names = [f"enable_{method}" for method in methods]
    enclosed = connection.in_atomic_block
    with (
        nullcontext() if enclosed else transaction.atomic(using=using),
        connection.cursor() as cursor,
    ):
        before: list[str] = []
        if enclosed:
            cursor.execute("SELECT " + ", ".join(["current_setting(%s)"] * len(names)), names)
            before = list(cursor.fetchone())
        cursor.execute("SELECT " + ", ".join(["set_config(%s, 'off', true)"] * len(names)), names)
        yield
        if enclosed:
            pairs = [value for pair in zip(names, before, strict=True) for value in pair]
            cursor.execute("SELECT " + ", ".join(["set_config(%s, %s, true)"] * len(names)), pairs)
