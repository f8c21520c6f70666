"""Test support: what PostgreSQL plans for the statements a piece of code runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection
from django.db.models import Model


def statistics_taken_now(model: type[Model]) -> None:
    """ANALYZE the model's table: rows added afterwards are unknown to the planner.

    The state of a queue table right after a burst of inserts, before
    autovacuum analyses it again.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


@contextmanager
def plans_of(marker: str) -> Iterator[list[str]]:
    """Collects ``EXPLAIN`` of each statement containing ``marker`` run in the block.

    Each is explained on the same connection, in the same transaction and
    with the same parameters just before it runs, so the plan is the one the
    statement gets (planner settings of the moment included).
    """
    plans: list[str] = []

    def explain(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if marker in sql and not sql.startswith("EXPLAIN "):
            with context["connection"].cursor() as cursor:
                cursor.execute(f"EXPLAIN {sql}", params)
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain):
        yield plans


def planner_settings() -> tuple[str, str]:
    """The connection's ``enable_bitmapscan`` and ``enable_sort`` now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('enable_bitmapscan'), current_setting('enable_sort')"
        )
        row = cursor.fetchone()
    return row[0], row[1]
