"""Push through real Celery workers: batches that go on with the channel's due rows.

The workers run on the test database, RabbitMQ and Redis; the provider is the
push simulator (simulators/push) in this process. Each worker process claims
further due rows while its last requests are in flight, so several processes
pull from the same table at once: each message must still reach its device
once, and a worker killed with SIGKILL must neither lose a row nor send again
one it had recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Count
from django.utils import timezone

from emporium.accounts.models import User
from emporium.notifications.channels import services
from emporium.notifications.channels.models import Delivery, DeliveryStatus, DeviceToken
from emporium.notifications.channels.tests.factories import delivery_requests
from emporium.notifications.channels.tests.test_worker_kill import (
    batches_through_rabbitmq,
    ids_in,
    leases_run_out,
)
from simulators.push.server import PushSimulatorThread, PushState
from tests.support.processes import WorkerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _users_with_tokens(count: int, *, prefix: str, dead_every: int = 0) -> list[User]:
    users = User.objects.bulk_create(
        User(username=f"{prefix}{n}", email=f"{prefix}{n}@example.com", password="!")
        for n in range(count)
    )
    DeviceToken.objects.bulk_create(
        DeviceToken(
            user=user,
            platform="android",
            token=("dead-" if dead_every and n % dead_every == 0 else "live-")
            + f"{prefix}-{n:06d}-"
            + "t" * 20,
        )
        for n, user in enumerate(users)
    )
    return users


def _accepted_by_delivery(state: PushState) -> dict[int, int]:
    return {int(delivery_id): count for (_, delivery_id), count in dict(state.received).items()}


def _unfinished() -> int:
    return Delivery.objects.filter(
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.CLAIMED]
    ).count()


def test_workers_pulling_due_rows_at_once_send_each_message_once(
    start_worker: Callable[..., WorkerProcess], broker_url: str, settings: Any
) -> None:
    batches_through_rabbitmq(broker_url, settings, "push")
    # 5 % refused for now (Retry-After: 1), one token in 50 unregistered.
    state = PushState(failure_rate=0.05, retry_after=1)
    with PushSimulatorThread(state) as simulator:
        environment = {"PUSH_PROVIDER_URL": simulator.url, "NOTIFICATION_PUSH_RATE": "0"}
        worker = start_worker(queues="push", concurrency=2, extra_env=environment)
        users = _users_with_tokens(3000, prefix="pull", dead_every=50)
        assert (
            services.channel_deliveries_enqueue(
                requests=delivery_requests(users, channel="push", key="pull")
            )
            == 3000
        )
        assert wait_until(lambda: _unfinished() == 0, timeout=90), worker.log()
        stats = state.stats()
        received = _accepted_by_delivery(state)

    statuses = dict(Delivery.objects.values_list("status").annotate(count=Count("id")).order_by())
    assert statuses == {"sent": 2940, "skipped": 60}
    sent = ids_in(DeliveryStatus.SENT)
    assert set(received) == sent  # nothing lost, nothing sent for a skipped row
    assert stats["duplicates"] == 0
    assert all(count == 1 for count in received.values())
    assert stats["transient"] > 0  # retries happened, through RabbitMQ's delayed delivery
    assert Delivery.objects.filter(attempts__gte=2, status=DeliveryStatus.SENT).exists()
    # A dead token is asked once, never retried, and removed.
    assert stats["unregistered"] == 60
    assert not DeviceToken.objects.filter(token__startswith="dead-").exists()


def test_a_worker_killed_while_pulling_never_sends_a_recorded_delivery_again(
    start_worker: Callable[..., WorkerProcess], broker_url: str, settings: Any
) -> None:
    batches_through_rabbitmq(broker_url, settings, "push")
    # Slow answers (32 in flight, 20 ms each) so the kill lands with a batch on the wire
    # and the next one claimed.
    state = PushState(latency_ms=20)
    with PushSimulatorThread(state) as simulator:
        environment = {"PUSH_PROVIDER_URL": simulator.url, "NOTIFICATION_PUSH_RATE": "0"}
        first = start_worker(queues="push", extra_env=environment)
        users = _users_with_tokens(3000, prefix="kill")
        services.channel_deliveries_enqueue(
            requests=delivery_requests(users, channel="push", key="kill")
        )
        assert wait_until(lambda: state.accepted >= 1200, timeout=60), first.log()
        first.kill()

        recorded, held = ids_in(DeliveryStatus.SENT), ids_in(DeliveryStatus.CLAIMED)
        assert recorded  # the kill landed in the middle of the work
        assert held
        assert set(_accepted_by_delivery(state)) >= recorded  # recorded only once accepted

        # The dead worker's lease runs out; a second worker takes the re-delivered
        # batch, the queued ones, and what the sweep queues.
        leases_run_out()
        start_worker(queues="push", extra_env=environment)
        services.deliveries_due_dispatch(now=timezone.now() + timedelta(minutes=5))
        assert wait_until(lambda: _unfinished() == 0, timeout=90)
        received = _accepted_by_delivery(state)

    all_ids = set(Delivery.objects.values_list("id", flat=True))
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}
    assert set(received) == all_ids  # nothing lost
    assert all(received[delivery_id] == 1 for delivery_id in recorded)
    twice = {delivery_id for delivery_id, count in received.items() if count > 1}
    # At most what was accepted but not yet recorded when the kill came: answers of
    # the batch on the wire and of the one claimed behind it.
    assert twice <= held
    assert len(twice) <= 2 * services.OutcomeRecorder.flush_every
