"""Broadcasts through real workers on RabbitMQ and PostgreSQL, killed and cut off on purpose.

Exactly once per recipient is checked where it is recorded: the inbox rows
(one per recipient) and the broadcast's progress counters (each batch
counted once). To catch a worker in the middle of a batch, the test locks the
account row of one recipient of the first batch (``FOR UPDATE``): the batch's
foreign-key check on that row (deferred to its commit) then waits, its rows
written but not committed, until the test lets go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from kombu import Connection

from conftest import require_service
from emporium.core.tests.factories import StaffFactory, UserFactory, client_for
from emporium.integrations.tests.support import broker_address, through_proxy
from emporium.notifications.models import Broadcast, BroadcastStatus, Notification
from tests.support.processes import (
    TcpProxy,
    WorkerProcess,
    database_url_for_current_test_db,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

StartWorker = Callable[..., WorkerProcess]
USERS = 60
BATCH = 20


@pytest.fixture(autouse=True)
def _real_servers(settings) -> None:  # type: ignore[no-untyped-def]
    require_service("DATABASE_URL")
    require_service("BROKER_URL")
    settings.EMPORIUM_NOTIFICATIONS_BROADCAST_BATCH = BATCH


@pytest.fixture
def broker(broker_url: str) -> Iterator[Connection]:
    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.channel()
        try:
            channel.queue_purge("notifications")
        except connection.channel_errors:
            pass  # not declared yet
        finally:
            channel.close()
        yield connection


class HeldRow:
    """A recipient's account row locked in a connection of its own; a batch waits on it."""

    def __init__(self, *, recipient_id: int) -> None:
        self.connection = psycopg.connect(database_url_for_current_test_db())
        # Activity is read outside that transaction: inside, pg_stat_activity would not change.
        self.observer = psycopg.connect(database_url_for_current_test_db(), autocommit=True)
        self.connection.execute(
            "SELECT 1 FROM accounts_user WHERE id = %s FOR UPDATE", (recipient_id,)
        )

    def batch_waiting(self) -> bool:
        row = self.observer.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()
        return bool(row and row[0])

    def release(self) -> None:
        self.connection.rollback()
        self.connection.close()
        self.observer.close()


def start_broadcast(staff) -> int:  # type: ignore[no-untyped-def]
    response = client_for(staff).post(
        "/api/notifications/broadcasts/",
        {
            "title": "Flash sale",
            "body": "Two hours only.",
            "channels": ["in_app"],
            "audience": {"type": "all"},
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    return int(response.json()["id"])


def assert_exactly_once(broadcast_id: int, recipients: list[int]) -> None:
    rows = list(
        Notification.objects.filter(dedup_key=f"broadcast:{broadcast_id}").values_list(
            "recipient_id", flat=True
        )
    )
    assert sorted(rows) == sorted(recipients)  # every recipient, none twice
    broadcast = Broadcast.objects.get(pk=broadcast_id)
    assert broadcast.status == BroadcastStatus.COMPLETED
    assert (broadcast.batches_done, broadcast.recipients_done) == (
        broadcast.batches_total,
        len(recipients),
    )


def completed(broadcast_id: int) -> bool:
    return Broadcast.objects.get(pk=broadcast_id).status == BroadcastStatus.COMPLETED


def test_a_worker_killed_mid_batch_leaves_each_recipient_exactly_one_notification(
    start_worker: StartWorker, broker: Connection
) -> None:
    staff = StaffFactory()
    users = [staff.pk] + [UserFactory().pk for _ in range(USERS - 1)]
    first_worker = start_worker(queues="notifications")
    held = HeldRow(recipient_id=users[5])
    try:
        broadcast_id = start_broadcast(staff)
        assert wait_until(held.batch_waiting, timeout=30), first_worker.log()
        first_worker.kill()  # mid-batch: its transaction has rows it never commits
    finally:
        held.release()

    second_worker = start_worker(queues="notifications")
    assert wait_until(lambda: completed(broadcast_id), timeout=60), second_worker.log()
    assert_exactly_once(broadcast_id, users)


def test_rabbitmq_cut_during_a_broadcast_still_delivers_exactly_once(
    start_worker: StartWorker,
    broker: Connection,
    broker_url: str,
    tcp_proxy: Callable[[str, int], TcpProxy],
) -> None:
    proxy = tcp_proxy(*broker_address(broker_url))
    staff = StaffFactory()
    users = [staff.pk] + [UserFactory().pk for _ in range(USERS - 1)]
    worker = start_worker(
        queues="notifications",
        extra_env={"BROKER_URL": through_proxy(broker_url, proxy.url_host)},
    )
    held = HeldRow(recipient_id=users[5])
    try:
        broadcast_id = start_broadcast(staff)
        assert wait_until(held.batch_waiting, timeout=30), worker.log()
        # The worker is inside the first batch: RabbitMQ goes away before it can ack.
        proxy.cut()
    finally:
        held.release()
    # The batch commits while the broker is unreachable; its message was never acked.
    assert wait_until(
        lambda: Broadcast.objects.get(pk=broadcast_id).batches_done >= 1, timeout=30
    ), worker.log()
    proxy.restore()

    assert wait_until(lambda: completed(broadcast_id), timeout=90), worker.log()
    assert_exactly_once(broadcast_id, users)
