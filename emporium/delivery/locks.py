"""Row locks of the delivery app: one helper per model, used by every path.

A device's last-position row is what serialises its telemetry batches: the
batch that locks it first is stored first, so the next one sees its points.
Other devices are not held up. The lock is taken with one statement on either
database (SQLite has no row locks; its transaction already holds the write
lock from BEGIN IMMEDIATE, so the same SELECT there only reads).
"""

from __future__ import annotations

from typing import Any, Protocol

from django.db import connection

from emporium.delivery.storage.tables import POSITION_TABLE


class Cursor(Protocol):
    def execute(self, sql: str, params: Any = ...) -> Any: ...

    def fetchone(self) -> Any: ...


def _lock_sql() -> str:
    locking = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return f"SELECT 1 FROM {POSITION_TABLE} WHERE device_id = %s{locking}"  # noqa: S608 (constant names)


_CREATE_SQL = (
    f"INSERT INTO {POSITION_TABLE} (device_id) VALUES (%s)"  # noqa: S608 (constant names)
    " ON CONFLICT (device_id) DO NOTHING"
)


def device_position_lock(*, device_id: int, cursor: Cursor) -> None:
    """Lock the device's position row until commit (creating it on the first batch).

    Must run inside the caller's transaction, on ``cursor`` (the PostgreSQL
    ingestion passes its server-binding cursor so the lock is prepared too).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("device_position_lock needs a transaction: the lock ends at commit")
    sql = _lock_sql()
    cursor.execute(sql, [device_id])
    if cursor.fetchone() is None:
        cursor.execute(_CREATE_SQL, [device_id])
        cursor.execute(sql, [device_id])
        cursor.fetchone()
