"""The backend of a read replica's alias: the project's backend, falling back to the primary.

The router sends a read to a replica only while its probe found it well
(:mod:`emporium.core.db.replicas`), but a replica can die between two probes.
When a connection to it cannot be had (refused, timed out, no pooled connection
within a second), the replica is marked down at once and the read is served on
a connection of the primary, borrowed from the primary's pool when there is one
(and given back to it when the request ends), so the request is answered, and
the number of connections stays within the pools' sizes. A replica that dies
in the middle of a query fails that query, as a primary would; the broken
connection reports the replica lost (``core.db.replicas.replica_lost``), and the
request's read is answered again from the primary by ``replica_failover``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseErrorWrapper
from django.utils.functional import cached_property

from emporium.core.db.connection import connection_tune
from emporium.core.db.replicas import replica_lost, replica_mark_down, replica_state
from emporium.core.db_backends.postgresql import base

try:
    from psycopg_pool import PoolTimeout
except ImportError:  # pragma: no cover - installed with the PostgreSQL extras
    PoolTimeout = psycopg.OperationalError  # type: ignore[assignment,misc]


class _ReplicaErrors(DatabaseErrorWrapper):
    """Django's error translation, noticing first when the error broke the replica's connection."""

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        wrapper: DatabaseWrapper = self.wrapper  # type: ignore[attr-defined]
        connection = wrapper.connection
        if (
            isinstance(exc_value, psycopg.OperationalError)
            and not wrapper.serving_from_primary
            and (connection is None or connection.closed or connection.broken)
        ):
            replica_lost(wrapper.alias)
        super().__exit__(exc_type, exc_value, traceback)


class DatabaseWrapper(base.DatabaseWrapper):
    # True while this alias's connection is in fact one to the primary.
    serving_from_primary = False

    @cached_property
    def wrap_database_errors(self) -> DatabaseErrorWrapper:
        return _ReplicaErrors(self)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        try:
            connection = super().get_new_connection(conn_params)
        except (psycopg.Error, PoolTimeout):
            replica_mark_down(self.alias)
            return self._primary_connection()
        self.serving_from_primary = False
        return connection

    def _primary_connection(self) -> Any:
        primary = connections[DEFAULT_DB_ALIAS]
        pool = primary.pool  # type: ignore[attr-defined]
        if pool is not None:
            pool.open()
            # Its _pool is the primary's: Django's _close gives it back there.
            connection = pool.getconn()
        else:
            connection = primary.get_new_connection(primary.get_connection_params())
        connection_tune(connection=connection)
        self.serving_from_primary = True
        return connection

    def close_if_unusable_or_obsolete(self) -> None:
        # A persistent connection that stood in for the replica goes once the replica is back.
        if (
            self.serving_from_primary
            and self.connection is not None
            and replica_state(self.alias).usable
        ):
            self.close()
            return
        super().close_if_unusable_or_obsolete()
