"""The transactional outbox: events are written with the change and relayed in order, once.

Most tests drive the relay themselves with a publisher that records what it is
handed; the ones marked with ``broker_url`` publish to the real RabbitMQ topic
exchange and read the messages back.
"""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from kombu import Connection, Exchange, Queue

from emporium.accounts.models import User
from emporium.carts import services as cart_services
from emporium.catalog.models import Product
from emporium.core.tests.factories import ProductFactory, UserFactory
from emporium.core.tests.plans import planner_settings, plans_of, statistics_taken_now
from emporium.integrations import events
from emporium.integrations.models import OutboxEvent
from emporium.integrations.publishers import EVENTS_EXCHANGE, BrokerPublisher, EventPublisher
from emporium.integrations.relay import (
    MAX_HANDLER_ATTEMPTS,
    outbox_relay_batch,
    outbox_relay_pending,
)
from emporium.integrations.tests.support import RecordingPublisher, event_queue, message_ids
from emporium.orders import services as order_services
from emporium.orders.models import Order


@pytest.fixture
def relay_driven_by_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """No relay after commit and no follow-up work: each test runs the relay itself."""
    monkeypatch.setattr(events, "_after_commit_hooks", [])
    monkeypatch.setattr(events, "_handlers", {})


def checkout(user: User, *lines: tuple[Product, int]) -> Order:
    for product, quantity in lines:
        cart_services.cart_item_add(user=user, product=product, quantity=quantity)
    return order_services.order_place(user_id=user.pk)


def record(event_type: str, number: int) -> OutboxEvent:
    return events.event_record(
        event_type=event_type, aggregate_type="test", aggregate_id=number, payload={"n": number}
    )


def unpublished() -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(published_at__isnull=True).order_by("created_at"))


# --- recording events ---------------------------------------------------------------


@pytest.mark.django_db
def test_an_event_recorded_in_a_rolled_back_transaction_leaves_no_row_and_no_relay(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
) -> None:
    relayed: list[str] = []
    monkeypatch.setattr(events, "_after_commit_hooks", [lambda: relayed.append("relay")])

    def change_that_fails() -> None:
        with transaction.atomic():
            record("test.rolled_back", 1)
            assert OutboxEvent.objects.count() == 1
            raise RuntimeError("the change failed")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError, match="the change failed"),
    ):
        change_that_fails()

    assert OutboxEvent.objects.count() == 0
    assert callbacks == []
    assert relayed == []


@pytest.mark.django_db
def test_an_event_recorded_in_a_committed_transaction_starts_the_relay_once_after_commit(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks
) -> None:
    relayed: list[int] = []
    monkeypatch.setattr(
        events, "_after_commit_hooks", [lambda: relayed.append(OutboxEvent.objects.count())]
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        event = record("test.committed", 1)
        assert relayed == []  # nothing runs before the commit

    assert list(OutboxEvent.objects.values_list("id", "event_type", "published_at")) == [
        (event.id, "test.committed", None)
    ]
    assert len(callbacks) == 1
    assert relayed == [1]  # ran after the commit, and saw the row


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
def test_checkout_events_carry_unique_uuid_ids(settings) -> None:
    settings.EMPORIUM_LOW_STOCK_THRESHOLD = 5
    user = UserFactory()
    product = ProductFactory(stock_quantity=7, price=Decimal("12.50"))

    first = checkout(user, (product, 2))  # 7 -> 5: crosses the low-stock threshold
    second = checkout(user, (product, 1))  # 5 -> 4: already low, no second stock.low

    recorded = list(OutboxEvent.objects.order_by("created_at"))
    assert [(e.event_type, e.aggregate_type, e.aggregate_id) for e in recorded] == [
        ("order.placed", "order", str(first.pk)),
        ("stock.low", "product", str(product.pk)),
        ("order.placed", "order", str(second.pk)),
    ]
    assert recorded[0].payload == {
        "order_id": first.pk,
        "user_id": user.pk,
        "total_amount": "25.00",
        "items": [{"product_id": product.pk, "quantity": 2, "price": "12.50"}],
    }
    assert recorded[1].payload == {"product_id": product.pk, "stock_quantity": 5}
    ids = [event.id for event in recorded]
    assert all(isinstance(event_id, uuid.UUID) and event_id.version == 4 for event_id in ids)
    assert len(set(ids)) == 3
    assert all(event.published_at is None and event.attempts == 0 for event in recorded)


# --- the relay ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
def test_relay_publishes_in_creation_order_and_stamps_published_at() -> None:
    created = [record("test.ordered", number).id for number in range(10)]
    publisher = RecordingPublisher()
    before = timezone.now()

    sent = outbox_relay_batch(publisher=publisher)

    assert sent == 10
    assert publisher.published == created
    stamps = set(OutboxEvent.objects.values_list("published_at", flat=True))
    assert len(stamps) == 1
    (stamp,) = stamps
    assert before <= stamp <= timezone.now()
    assert set(OutboxEvent.objects.values_list("attempts", "last_error")) == {(0, "")}


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
def test_a_relay_batch_walks_the_unpublished_index_whatever_the_statistics_say() -> None:
    # A burst of orders, or a broker outage, leaves a backlog the table's
    # statistics know nothing of: left to choose, the planner read and sorted
    # all of it for each batch of 200.
    if connection.vendor != "postgresql":
        pytest.skip("planner settings are PostgreSQL's")
    statistics_taken_now(OutboxEvent)
    now = timezone.now()
    OutboxEvent.objects.bulk_create(
        OutboxEvent(
            id=uuid.uuid4(),
            event_type="test.burst",
            aggregate_type="test",
            aggregate_id=str(n),
            payload={"n": n},
            created_at=now,
        )
        for n in range(3000)
    )
    publisher = RecordingPublisher()
    with transaction.atomic(), plans_of('ORDER BY "integrations_outboxevent"') as plans:
        assert outbox_relay_batch(publisher=publisher, limit=50) == 50
        assert planner_settings() == ("on", "on")  # for the batch's read only
    assert len(plans) == 1
    assert "Index Scan using outbox_unpublished_idx" in plans[0], plans[0]
    assert "Bitmap" not in plans[0], plans[0]


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
def test_relay_batches_respect_the_limit_and_a_full_pass_drains_the_outbox() -> None:
    created = [record("test.batched", number).id for number in range(7)]
    publisher = RecordingPublisher()

    assert outbox_relay_batch(publisher=publisher, limit=3) == 3
    assert publisher.published == created[:3]
    assert [event.id for event in unpublished()] == created[3:]

    assert outbox_relay_pending(publisher=publisher) == 4
    assert publisher.published == created
    assert unpublished() == []


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
def test_a_second_relay_pass_publishes_nothing_more() -> None:
    record("test.once", 1)
    record("test.once", 2)
    publisher = RecordingPublisher()
    assert outbox_relay_pending(publisher=publisher) == 2
    stamped = dict(OutboxEvent.objects.values_list("id", "published_at"))

    assert outbox_relay_pending(publisher=publisher) == 0
    assert outbox_relay_batch(publisher=publisher) == 0

    assert len(publisher.published) == 2
    assert dict(OutboxEvent.objects.values_list("id", "published_at")) == stamped


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
def test_a_publisher_failure_stops_the_pass_and_records_the_attempt() -> None:
    first, second, third = (record("test.outage", number) for number in range(3))
    publisher = RecordingPublisher(fail_on_call=2)

    sent = outbox_relay_batch(publisher=publisher)

    assert sent == 1
    assert publisher.calls == 2  # the third event was not even tried
    assert publisher.published == [first.id]
    rows = {
        event.id: (event.published_at is not None, event.attempts, event.last_error)
        for event in OutboxEvent.objects.all()
    }
    assert rows == {
        first.id: (True, 0, ""),
        second.id: (False, 1, "broker unreachable"),
        third.id: (False, 0, ""),
    }

    # The broker is back: the next pass sends the rest, still in order.
    healthy = RecordingPublisher()
    assert outbox_relay_batch(publisher=healthy) == 2
    assert healthy.published == [second.id, third.id]
    assert unpublished() == []
    assert OutboxEvent.objects.get(pk=second.pk).attempts == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
def test_a_relay_pass_with_the_broker_down_returns_quietly() -> None:
    """It runs right after a checkout commits (embedded profile): it must never raise."""
    event = record("test.quiet", 1)

    assert outbox_relay_pending(publisher=RecordingPublisher(fail_on_call=1)) == 0

    event.refresh_from_db()
    assert (event.published_at, event.attempts, event.last_error) == (
        None,
        1,
        "broker unreachable",
    )


def _raise_in_python(event: OutboxEvent) -> None:
    raise RuntimeError(f"handler exploded for {event.aggregate_id}")


def _raise_in_the_database(event: OutboxEvent) -> None:
    # On PostgreSQL a failed statement aborts the surrounding transaction: the
    # relay must still be able to record the failure and stamp the other events.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM emporium_table_that_does_not_exist")


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
@pytest.mark.parametrize(
    ("failing_handler", "error_fragment"),
    [
        (_raise_in_python, "handler exploded for 1"),
        (_raise_in_the_database, "emporium_table_that_does_not_exist"),
    ],
    ids=["python-error", "database-error"],
)
def test_a_failing_handler_does_not_block_later_events_and_is_parked(
    failing_handler, error_fragment: str
) -> None:
    handled: list[str] = []
    events.on_event("test.poison")(failing_handler)
    events.on_event("test.fine")(lambda event: handled.append(event.aggregate_id))
    poison = record("test.poison", 1)
    fine = record("test.fine", 2)
    publisher = RecordingPublisher()

    assert outbox_relay_batch(publisher=publisher) == 1
    assert handled == ["2"]
    fine.refresh_from_db()
    assert fine.published_at is not None
    assert fine.attempts == 0

    for attempt in range(1, MAX_HANDLER_ATTEMPTS):
        poison.refresh_from_db()
        assert poison.published_at is None
        assert poison.attempts == attempt
        assert error_fragment in poison.last_error
        sent = outbox_relay_batch(publisher=publisher)
        assert sent == (1 if attempt + 1 == MAX_HANDLER_ATTEMPTS else 0)

    poison.refresh_from_db()
    assert poison.attempts == MAX_HANDLER_ATTEMPTS
    assert poison.published_at is not None  # parked: never handled again
    assert error_fragment in poison.last_error
    assert outbox_relay_batch(publisher=publisher) == 0
    assert handled == ["2"]
    # At least once: the poison event went to the broker on every attempt.
    assert publisher.published == [poison.id, fine.id] + [poison.id] * (MAX_HANDLER_ATTEMPTS - 1)


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
def test_the_outbox_relay_command_drains_the_outbox_once() -> None:
    """``manage.py outbox_relay --once`` with the configured publisher (broker or log)."""
    record("test.command", 1)
    record("test.command", 2)
    output = StringIO()

    call_command("outbox_relay", "--once", stdout=output)
    call_command("outbox_relay", "--once", stdout=output)

    assert output.getvalue().splitlines() == ["published 2 events", "published 0 events"]
    assert unpublished() == []


# --- concurrency (PostgreSQL) and the real broker -----------------------------------


class MeetingPublisher:
    """On its first publish, waits until the other relay is publishing too.

    Both relays then hold a claimed batch at the same moment, so a relay that
    did not skip the other's locked rows would either publish them again or
    block (and break the barrier).
    """

    def __init__(self, inner: EventPublisher, barrier: threading.Barrier) -> None:
        self.inner = inner
        self.barrier = barrier
        self.sent: list[uuid.UUID] = []

    def publish(self, event: OutboxEvent) -> None:
        if not self.sent:
            self.barrier.wait()
        self.inner.publish(event)
        self.sent.append(event.id)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("relay_driven_by_test")
def test_two_racing_relays_never_publish_the_same_event_twice(
    database_url: str, broker_url: str
) -> None:
    assert connection.vendor == "postgresql"
    created = [record("test.race", number).id for number in range(30)]
    barrier = threading.Barrier(2, timeout=10)
    relays = [MeetingPublisher(BrokerPublisher(broker_url), barrier) for _ in range(2)]
    failures: list[Exception] = []

    def run(publisher: MeetingPublisher) -> None:
        try:
            while outbox_relay_batch(publisher=publisher, limit=5):
                pass
        except Exception as error:  # surfaced by the assertions below
            failures.append(error)
        finally:
            publisher.close()
            connection.close()

    with event_queue(broker_url, routing_key="test.race") as queue:
        threads = [threading.Thread(target=run, args=(publisher,)) for publisher in relays]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        received = message_ids(queue.drain())

    assert failures == []
    assert not barrier.broken
    assert all(publisher.sent for publisher in relays)  # both really worked at once
    assert sorted(relays[0].sent + relays[1].sent) == sorted(created)
    assert set(relays[0].sent).isdisjoint(relays[1].sent)
    assert sorted(received) == sorted(str(event_id) for event_id in created)
    assert unpublished() == []
    assert set(OutboxEvent.objects.values_list("attempts", "last_error")) == {(0, "")}


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
def test_an_order_placed_event_reaches_the_topic_exchange(broker_url: str, settings) -> None:
    settings.EMPORIUM_LOW_STOCK_THRESHOLD = 5
    user = UserFactory()
    tea = ProductFactory(name="Tea", price=Decimal("4.20"), stock_quantity=6)
    mug = ProductFactory(name="Mug", price=Decimal("9.95"), stock_quantity=40)

    with event_queue(broker_url, routing_key="order.#") as queue:
        order = checkout(user, (mug, 1), (tea, 3))
        publisher = BrokerPublisher(broker_url)
        try:
            sent = outbox_relay_pending(publisher=publisher)
        finally:
            publisher.close()
        messages = queue.drain()
        assert queue.drain() == []

    assert tea.pk < mug.pk
    assert sent == 2  # order.placed and stock.low (tea 6 -> 3)
    placed = OutboxEvent.objects.get(event_type="order.placed")
    assert placed.published_at is not None
    assert len(messages) == 1  # stock.low is not routed to order.#
    (message,) = messages
    assert message.payload == {
        "id": str(placed.id),
        "type": "order.placed",
        "aggregate": {"type": "order", "id": str(order.pk)},
        "occurred_at": placed.created_at.isoformat(),
        "data": {
            "order_id": order.pk,
            "user_id": user.pk,
            "total_amount": "22.55",
            "items": [  # in product-id order, as the stock was taken
                {"product_id": tea.pk, "quantity": 3, "price": "4.20"},
                {"product_id": mug.pk, "quantity": 1, "price": "9.95"},
            ],
        },
    }
    assert message.properties["message_id"] == str(placed.id)
    assert message.properties["delivery_mode"] == 2  # persistent
    assert message.content_type == "application/json"
    assert message.delivery_info["exchange"] == "emporium.events"
    assert message.delivery_info["routing_key"] == "order.placed"


@pytest.mark.django_db
@pytest.mark.usefixtures("relay_driven_by_test")
def test_an_event_the_broker_refuses_is_not_stamped_published(broker_url: str) -> None:
    """Only the broker's confirm counts: a nack (here, a full queue) leaves the row pending."""
    exchange = Exchange(EVENTS_EXCHANGE, type="topic", durable=True)
    full = Queue(
        f"emporium.test.full.{uuid.uuid4()}",
        exchange,
        routing_key="test.refused",
        auto_delete=True,
        durable=False,
        queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
    )
    event = record("test.refused", 1)
    publisher = BrokerPublisher(broker_url)
    with Connection(broker_url, connect_timeout=5) as broker:
        bound = full(broker.default_channel)
        exchange(broker.default_channel).declare()
        bound.declare()
        try:
            assert outbox_relay_batch(publisher=publisher) == 0
        finally:
            publisher.close()
            bound.delete()

    event.refresh_from_db()
    assert event.published_at is None
    assert event.attempts == 1
    assert event.last_error == "MessageNacked"
