"""Real Celery workers on RabbitMQ and PostgreSQL, killed and poisoned on purpose.

Each test starts ``celery worker`` processes (``start_worker``) on the test
database and the real broker, and looks at the outcome where it is recorded:
the database, the simulated provider's ledger, and the broker's queues
(read with kombu).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from kombu import Connection, Queue
from kombu.message import Message

from config.celery import DEAD_LETTER_QUEUE
from conftest import require_service
from emporium.core.tests.factories import OrderFactory, PaymentFactory
from emporium.orders.models import Order, OrderStatus, OrderStatusChange
from emporium.payments.models import Payment, PaymentStatus
from emporium.payments.tasks import payment_process
from tests.support import worker_tasks
from tests.support.processes import ProviderProcess, WorkerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

TEST_TASKS = "tests.support.worker_tasks"
StartWorker = Callable[..., WorkerProcess]


@pytest.fixture(autouse=True)
def _real_servers() -> None:
    require_service("DATABASE_URL")
    require_service("BROKER_URL")


@pytest.fixture
def broker(broker_url: str) -> Iterator[Connection]:
    with Connection(broker_url, connect_timeout=5) as connection:
        yield connection


def purge(broker: Connection, name: str) -> None:
    """Drops messages an interrupted earlier run may have left in a work queue."""
    channel = broker.channel()
    try:
        channel.queue_purge(name)
    except broker.channel_errors:
        pass  # not declared yet: nothing to drop
    finally:
        channel.close()


def lines(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


def make_payment() -> Payment:
    order = OrderFactory(total_amount=Decimal("75.30"))
    return PaymentFactory(order=order, amount=Decimal("75.30"), provider_token="tok_visa")


def payment_status(payment: Payment) -> str:
    return str(Payment.objects.get(pk=payment.pk).status)


# -- a worker killed in the middle of a payment ------------------------------------------


def test_worker_killed_mid_charge_leaves_exactly_one_charge(
    payment_provider: ProviderProcess, start_worker: StartWorker, broker: Connection
) -> None:
    purge(broker, "payments")
    payment_provider.control(latency_ms=3000)
    payment = make_payment()
    first = start_worker(queues="payments")

    payment_process.apply_async(args=(payment.pk,))
    assert wait_until(lambda: payment_provider.ledger()["requests_seen"] == 1, timeout=20), (
        first.log()
    )
    first.kill()  # the charge is still being processed at the provider
    assert payment_status(payment) == PaymentStatus.PENDING

    second = start_worker(queues="payments")

    assert wait_until(lambda: payment_status(payment) != PaymentStatus.PENDING, timeout=30), (
        second.log()
    )
    [charge] = payment_provider.charges_for(f"payment-{payment.pk}")
    assert payment_provider.ledger()["requests_seen"] == 2  # the redelivery asked again
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.provider_reference == charge["id"]
    assert charge["amount"] == "75.30"
    assert Order.objects.get(pk=payment.order_id).order_status == OrderStatus.PAID
    assert list(
        OrderStatusChange.objects.filter(order_id=payment.order_id).values_list(
            "from_status", "to_status"
        )
    ) == [("pending_payment", "paid")]


def test_payment_retried_through_the_broker_succeeds_once_the_provider_recovers(
    payment_provider: ProviderProcess, start_worker: StartWorker, broker: Connection
) -> None:
    purge(broker, "payments")
    payment_provider.control(failure_rate=1.0)
    payment = make_payment()
    worker = start_worker(queues="payments")

    payment_process.apply_async(args=(payment.pk,))
    assert wait_until(lambda: payment_provider.ledger()["requests_seen"] == 1, timeout=20)
    payment_provider.control(failure_rate=0.0)

    # The retry waits out its backoff in RabbitMQ's delay queues, then comes back.
    assert wait_until(lambda: payment_status(payment) != PaymentStatus.PENDING, timeout=20), (
        worker.log()
    )
    assert payment_status(payment) == PaymentStatus.SUCCEEDED
    assert payment_provider.ledger()["requests_seen"] == 2
    assert len(payment_provider.charges_for(f"payment-{payment.pk}")) == 1
    assert "Direct exchanges are not supported" not in worker.log()


# -- the test queue: poison and delays ---------------------------------------------------


@pytest.fixture
def misbehaving_queue(broker: Connection) -> Iterator[Queue]:
    queue = worker_tasks.misbehaving_queue()
    channel = broker.channel()
    bound = queue.bind(channel)
    bound.declare()
    bound.purge()
    channel.close()
    yield queue
    channel = broker.channel()
    queue.bind(channel).delete()  # leave no poison behind for a later run
    channel.close()


def take_dead_letter(broker: Connection, task_id: str) -> Message | None:
    """Removes and returns our task's message from emporium.dead, if it is there.

    The queue is only read, never declared here: the worker must have declared it.
    Other parked messages go back when the channel closes unacknowledged.
    """
    channel = broker.channel()
    try:
        dead = Queue(DEAD_LETTER_QUEUE.name).bind(channel)
        while (message := dead.get(no_ack=False)) is not None:
            if message.headers.get("id") == task_id:
                message.ack()
                return message
    except broker.channel_errors:
        return None  # no such queue (yet)
    finally:
        channel.close()
    return None


def wait_for_dead_letter(broker: Connection, task_id: str, *, timeout: float) -> Message | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = take_dead_letter(broker, task_id)
        if message is not None:
            return message
        time.sleep(0.2)
    return None


def queue_depth(broker: Connection, queue: Queue) -> int:
    channel = broker.channel()
    try:
        return int(queue.bind(channel).queue_declare(passive=True).message_count)
    finally:
        channel.close()


def assert_parked_after_the_delivery_limit(
    dead: Message, *, marker: Path, task_name: str, broker: Connection, queue: Queue
) -> None:
    limit = worker_tasks.TEST_QUEUE_DELIVERY_LIMIT
    # A quorum queue dead-letters a message once it was returned more than
    # x-delivery-limit times: the first delivery plus `limit` redeliveries.
    assert lines(marker) == limit + 1
    assert dead.headers["task"] == task_name
    assert dead.headers["x-first-death-reason"] == "delivery_limit"
    assert dead.headers["x-first-death-queue"] == worker_tasks.TEST_QUEUE_NAME
    assert dead.decode()[0] == [str(marker)]
    assert queue_depth(broker, queue) == 0


def test_task_killing_its_pool_process_is_dead_lettered_after_the_delivery_limit(
    start_worker: StartWorker, broker: Connection, misbehaving_queue: Queue, tmp_path: Path
) -> None:
    marker = tmp_path / "deliveries"
    worker = start_worker(queues=misbehaving_queue.name, include=TEST_TASKS)

    sent = worker_tasks.kill_pool_process.apply_async(args=(str(marker),), queue=misbehaving_queue)

    parked = wait_for_dead_letter(broker, sent.id, timeout=30)
    assert parked is not None, worker.log()
    assert_parked_after_the_delivery_limit(
        parked,
        marker=marker,
        task_name="tests.kill_pool_process",
        broker=broker,
        queue=misbehaving_queue,
    )
    assert worker.process.poll() is None  # only its pool processes died
    assert "WorkerLostError" in worker.log()


def test_task_killing_its_whole_worker_is_dead_lettered_after_the_delivery_limit(
    start_worker: StartWorker, broker: Connection, misbehaving_queue: Queue, tmp_path: Path
) -> None:
    marker = tmp_path / "deliveries"
    sent = worker_tasks.kill_worker.apply_async(args=(str(marker),), queue=misbehaving_queue)

    # A supervisor, as in production: start a worker whenever the last one died.
    started = 0
    parked: Message | None = None
    deadline = time.monotonic() + 60
    worker: WorkerProcess | None = None
    while parked is None and time.monotonic() < deadline:
        parked = take_dead_letter(broker, sent.id)
        if parked is None and (worker is None or worker.process.poll() is not None):
            worker = start_worker(queues=misbehaving_queue.name, include=TEST_TASKS)
            started += 1
        time.sleep(0.2)

    assert parked is not None, worker.log() if worker else "no worker started"
    assert_parked_after_the_delivery_limit(
        parked, marker=marker, task_name="tests.kill_worker", broker=broker, queue=misbehaving_queue
    )
    limit = worker_tasks.TEST_QUEUE_DELIVERY_LIMIT
    assert started in (limit + 1, limit + 2)  # each delivery killed one; one may idle after


def test_a_task_waiting_for_its_retry_does_not_hold_up_the_queue(
    start_worker: StartWorker, misbehaving_queue: Queue, tmp_path: Path
) -> None:
    """One worker, one task at a time: the delayed retry must wait in the broker, not in it."""
    runs = tmp_path / "runs"
    slow, fast = tmp_path / "slow", tmp_path / "fast"
    start_worker(queues=misbehaving_queue.name, include=TEST_TASKS)

    worker_tasks.retry_once.apply_async(args=(str(slow), 4, str(runs)), queue=misbehaving_queue)
    assert wait_until(lambda: lines(slow) == 1, timeout=20)
    worker_tasks.retry_once.apply_async(args=(str(fast), 1, str(runs)), queue=misbehaving_queue)

    assert wait_until(lambda: lines(slow) == 2 and lines(fast) == 2, timeout=20)
    assert runs.read_text().split() == ["slow", "fast", "fast", "slow"]


# -- connections between tasks -------------------------------------------------------------


def test_a_pool_process_keeps_its_database_connection_from_task_to_task(
    start_worker: StartWorker, misbehaving_queue: Queue, tmp_path: Path
) -> None:
    """With a connection pool, the pool's few server processes serve every task of a child.

    Celery's own Django fix-up closed the pool around each task, so each task
    connected (and authenticated) anew, to a new server process; config.celery
    keeps the pool open, so tasks take turns on its connections.
    """
    marker = tmp_path / "backends"
    pool_size = 2
    worker = start_worker(
        queues=misbehaving_queue.name,
        include=TEST_TASKS,
        extra_env={"DATABASE_POOL_MAX_SIZE": str(pool_size), "DATABASE_POOL_MIN_SIZE": "1"},
    )
    tasks = 6
    for _ in range(tasks):  # one pool process runs them one after the other
        worker_tasks.note_backend_pid.apply_async(args=(str(marker),), queue=misbehaving_queue)
    assert wait_until(lambda: lines(marker) == tasks, timeout=30), worker.log()

    backends = marker.read_text().split()
    assert len(backends) == tasks
    assert len(set(backends)) <= pool_size, backends
