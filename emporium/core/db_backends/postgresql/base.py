"""Django's PostgreSQL backend with a health check that costs no round trip.

With persistent connections, ``CONN_HEALTH_CHECKS`` makes Django run
``SELECT 1`` before the first query of every request: on a checkout that is
one statement, the check doubled the round trips. A connection the server
has closed (a restart, ``pg_terminate_backend``, an idle timeout) has
something to read at once: the server's farewell error or end-of-file. An
idle, healthy connection has nothing to read. So the check polls the socket
without waiting; whatever it finds makes Django open a new connection.
docs/adr/0017-checkout-in-one-statement.md records the measurement.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if connection.info.transaction_status != TransactionStatus.IDLE:
            return bool(super().is_usable())  # mid-transaction: ask the server, as Django does
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable
