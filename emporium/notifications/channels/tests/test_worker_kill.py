"""A real Celery worker killed with SIGKILL in the middle of a batch of e-mails.

The worker runs on the test database, RabbitMQ and Redis; the mail goes to an
aiosmtpd sink in this process that answers each message slowly, so the kill
lands mid-batch. Whatever the worker had recorded as sent must never be sent
again; everything else must still arrive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from kombu import Connection

from conftest import require_service
from emporium.notifications.channels import services
from emporium.notifications.channels.models import Delivery, DeliveryStatus
from emporium.notifications.channels.tests.factories import UserFactory, delivery_requests
from simulators.smtp_sink import SinkHandler, SmtpSink
from tests.support.processes import WorkerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

_ID = re.compile(r"<notification\.(\d+)@")


def _purge(broker_url: str, name: str) -> None:
    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.channel()
        try:
            channel.queue_purge(name)
        except connection.channel_errors:
            pass  # not declared yet
        finally:
            channel.close()


def batches_through_rabbitmq(broker_url: str, settings: Any, queue: str) -> None:
    """Real services; batches go through RabbitMQ to the workers, from an empty queue."""
    require_service("DATABASE_URL")
    require_service("REDIS_URL")
    settings.CELERY_TASK_ALWAYS_EAGER = False
    _purge(broker_url, queue)


def ids_in(status: str) -> set[int]:
    return set(Delivery.objects.filter(status=status).values_list("id", flat=True))


def leases_run_out() -> None:
    """What time does for a dead worker's rows: their leases end now."""
    Delivery.objects.filter(status=DeliveryStatus.CLAIMED).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )


def _received(handler: SinkHandler) -> dict[int, int]:
    with handler.lock:
        return {int(_ID.match(key).group(1)): count for key, count in handler.received.items()}  # type: ignore[union-attr]


def test_a_worker_killed_mid_batch_never_sends_a_recorded_delivery_again(
    start_worker: Callable[..., WorkerProcess], broker_url: str, settings: Any
) -> None:
    batches_through_rabbitmq(broker_url, settings, "email")
    handler = SinkHandler(delay_seconds=0.01)
    with SmtpSink(handler) as sink:
        environment = {"EMAIL_URL": f"smtp://127.0.0.1:{sink.port}", "NOTIFICATION_EMAIL_RATE": "0"}
        first = start_worker(queues="email", extra_env=environment)
        users = UserFactory.create_batch(300)
        assert (
            services.channel_deliveries_enqueue(
                requests=delivery_requests(users, channel="email", key="kill")
            )
            == 300
        )
        assert wait_until(lambda: handler.stats()["accepted"] >= 120, timeout=60), first.log()
        first.kill()

        recorded, held = ids_in(DeliveryStatus.SENT), ids_in(DeliveryStatus.CLAIMED)
        assert recorded  # the kill landed in the middle of a batch
        assert held
        assert set(_received(handler)) >= recorded  # recorded only once the sink had it

        # Time passes: the dead worker's lease runs out. A second worker takes the
        # re-delivered batch, the next one, and what the sweep queues.
        leases_run_out()
        start_worker(queues="email", extra_env=environment)
        services.deliveries_due_dispatch(now=timezone.now() + timedelta(minutes=5))
        assert wait_until(
            lambda: Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 300, timeout=60
        )

    received = _received(handler)
    all_ids = set(Delivery.objects.values_list("id", flat=True))
    assert set(received) == all_ids  # nothing lost
    assert all(received[delivery_id] == 1 for delivery_id in recorded)
    twice = {delivery_id for delivery_id, count in received.items() if count > 1}
    # At most the messages taken by the sink but not yet recorded when the kill came.
    assert twice.isdisjoint(recorded)
    assert len(twice) <= services.OutcomeRecorder.flush_every
