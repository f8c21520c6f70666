"""Django's PostgreSQL backend with a health check that costs no round trip.

With persistent connections, ``CONN_HEALTH_CHECKS`` makes Django run
``SELECT 1`` before the first query of every request; psycopg's pool, asked
to check, sends an empty query for every connection it lends. On a checkout
that is one statement, the check doubled the round trips. A connection the
server has closed (a restart, ``pg_terminate_backend``, an idle timeout) has
something to read at once: the server's farewell error or end-of-file. An
idle, healthy connection has nothing to read. So the check polls the socket
without waiting; whatever it finds makes Django open a new connection, or the
pool lend another one. docs/adr/0017-checkout-in-one-statement.md records the
measurement.

Every connection it opens, or borrows from psycopg's pool, is tuned by
:func:`emporium.core.db.connection.connection_tune` before Django uses it.
"""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

from emporium.core.db.connection import connection_tune


def _socket_quiet(connection: Any) -> bool:
    """True when nothing waits to be read on an idle connection: the server has not left."""
    if connection is None or connection.closed or connection.broken:
        return False
    try:
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if connection.info.transaction_status != TransactionStatus.IDLE:
            return bool(super().is_usable())  # mid-transaction: ask the server, as Django does
        return _socket_quiet(connection)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = self._connection_usable(conn_params)
        connection_tune(connection=connection)
        return connection

    def _connection_usable(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        if pool is None:
            return connection
        # A pooled connection the server dropped while it sat idle is closed and
        # handed back (the pool replaces it); at most one try per pool slot.
        for _ in range(pool.max_size):
            if _socket_quiet(connection):
                return connection
            connection.close()
            pool.putconn(connection)
            connection = super().get_new_connection(conn_params)
        return connection
