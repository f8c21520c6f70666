"""Hot read queries as server-side prepared statements on Django's own connection.

For a product read with its JSON written in the SELECT list, planning cost ten
times running it: 1.09 ms of server CPU against 0.10 ms prepared
(docs/db_optimization.md). :func:`fetch_prepared` runs a query on a
server-binding cursor of the connection Django manages (its lifetime, health
checks and transactions stay Django's; :mod:`emporium.core.db.connection`
tunes it): PostgreSQL parses it once per connection and keeps a generic plan
once that costs no more than the custom ones. Django's own queries are
unaffected: its client-binding cursors never prepare.

The query is wrapped as Django's own are, so query logging (DEBUG,
``assertNumQueries``) and execute wrappers see it. On other databases it goes
through Django's cursor; with ``DATABASE_PREPARED_STATEMENTS`` off it is sent
unprepared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections

from emporium.core.db.connection import server_cursor
from emporium.core.db.replicas import read_alias


def fetch_prepared(
    sql: str, params: Sequence[Any], *, prepare: bool = True, using: str | None = None
) -> list[tuple[Any, ...]]:
    """All rows of ``sql`` (psycopg placeholders, ``%%`` for a literal percent sign).

    Without ``using`` it runs where the router sends reads (a replica when the
    request may read from one, :func:`emporium.core.db.replicas.read_alias`).

    ``prepare=False`` sends it unprepared, for a query whose best plan depends on
    its values: PostgreSQL plans it for them, as it does Django's queries.
    """
    using = using or read_alias()
    if connections[using].vendor != "postgresql":
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    with server_cursor(prepare=prepare, using=using) as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
