"""Hot read queries as server-side prepared statements on Django's own connection.

Django's psycopg backend binds parameters on the client and turns psycopg's
prepared statements off (``prepare_threshold=None``, for PgBouncer's sake), so
PostgreSQL parses and plans every query it is sent. For a product read with
its JSON written in the SELECT list, planning cost ten times running it: 1.09
ms of server CPU against 0.10 ms prepared (docs/db_optimization.md).
:func:`fetch_prepared` runs a query as a prepared statement on the connection
Django manages (its lifetime, health checks and transactions stay Django's):
PostgreSQL parses it once per connection and keeps a generic plan once that
costs no more than the custom ones. Django's own queries are unaffected: its
client-binding cursors never prepare.

Where Django is recording queries (DEBUG, ``assertNumQueries``) or an execute
wrapper is installed, the query goes through Django's cursor instead, so it is
seen, counted and wrapped as any other; so it does on other databases and with
``DATABASE_PREPARED_STATEMENTS`` off (a pooler that cannot keep them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

# Statements psycopg keeps per connection; the catalog list alone has a few
# hundred shapes (ordering x filters x direction), more than psycopg's 100.
PREPARED_MAX = 1024
# Never prepare a query on its own (psycopg's automatic preparation); only the
# queries run here, which ask for it.
_ONLY_WHEN_ASKED = 1 << 30


def fetch_prepared(
    sql: str, params: Sequence[Any], *, prepare: bool = True, using: str = DEFAULT_DB_ALIAS
) -> list[tuple[Any, ...]]:
    """All rows of ``sql`` (psycopg placeholders, ``%%`` for a literal percent sign).

    ``prepare=False`` sends it unprepared, for a query whose best plan depends on
    its values: PostgreSQL plans it for them, as it does Django's queries.
    """
    wrapper = connections[using]
    if (
        wrapper.vendor != "postgresql"
        or wrapper.queries_logged
        or wrapper.execute_wrappers
        or not settings.DATABASE_PREPARED_STATEMENTS
    ):
        with wrapper.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    import psycopg  # only PostgreSQL deployments import it

    wrapper.ensure_connection()
    raw = wrapper.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = _ONLY_WHEN_ASKED
        raw.prepared_max = PREPARED_MAX
    with wrapper.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params, prepare=prepare)
        return cursor.fetchall()
