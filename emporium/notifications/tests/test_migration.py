"""Moving the notification table from realtime to this app keeps every row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from emporium.core.tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [
    ("realtime", "0002_order_event_status_is_named_by_orders"),
    ("notifications", None),
]


def test_rows_written_by_realtime_survive_the_move() -> None:
    user = UserFactory()
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(BEFORE)
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO realtime_notification (user_id, kind, title, data, created_at)"
                " VALUES (%s, 'order_shipped', 'Order 3 has shipped', '{}', CURRENT_TIMESTAMP)",
                [user.pk],
            )
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    from emporium.notifications.models import Notification

    [row] = Notification.objects.filter(recipient=user)
    assert (row.kind, row.title, row.read_at) == ("order_shipped", "Order 3 has shipped", None)
    assert row.dedup_key == f"legacy:{row.pk}"
    assert "realtime_notification" not in connection.introspection.table_names()
