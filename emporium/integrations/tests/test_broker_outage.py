"""The broker goes away: checkout carries on and the outbox delivers once it is back.

RabbitMQ is reached through a TCP proxy that the test cuts and restores, so
the shared server itself keeps running. Needs PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection

from emporium.carts import services as cart_services
from emporium.core.tests.factories import ProductFactory, UserFactory, client_for
from emporium.integrations import events
from emporium.integrations.models import OutboxEvent
from emporium.integrations.publishers import BrokerPublisher
from emporium.integrations.relay import outbox_relay_batch, outbox_relay_pending
from emporium.integrations.tests.support import (
    ConfirmedPublisher,
    broker_address,
    event_queue,
    message_ids,
    through_proxy,
)
from emporium.orders.models import Order, OrderStatus
from tests.support.processes import TcpProxy

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("relay_driven_by_test"),
]

# Short timeouts: a refused or reset connection fails at once anyway.
PUBLISH_TIMEOUT = 2.0


@pytest.fixture
def relay_driven_by_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """No relay after commit and no follow-up tasks: the test runs each relay pass."""
    monkeypatch.setattr(events, "_after_commit_hooks", [])
    monkeypatch.setattr(events, "_handlers", {})


@pytest.fixture
def broker_proxy(
    database_url: str, broker_url: str, tcp_proxy: Callable[[str, int], TcpProxy]
) -> TcpProxy:
    assert connection.vendor == "postgresql"
    return tcp_proxy(*broker_address(broker_url))


def proxied_publisher(broker_url: str, proxy: TcpProxy) -> BrokerPublisher:
    return BrokerPublisher(through_proxy(broker_url, proxy.url_host), timeout=PUBLISH_TIMEOUT)


def test_checkout_succeeds_with_the_broker_down_and_the_event_goes_out_once_it_is_back(
    broker_url: str, broker_proxy: TcpProxy
) -> None:
    user = UserFactory()
    product = ProductFactory(price=Decimal("7.30"), stock_quantity=20)
    cart_services.cart_item_add(user=user, product=product, quantity=2)

    with event_queue(broker_url, routing_key="order.#") as queue:
        broker_proxy.cut()

        response = client_for(user).post("/api/orders/")

        assert response.status_code == 201, response.content
        order = Order.objects.get(pk=response.json()["id"])
        assert (order.user_id, order.order_status, order.total_amount) == (
            user.pk,
            OrderStatus.PENDING_PAYMENT,
            Decimal("14.60"),
        )
        product.refresh_from_db()
        assert product.stock_quantity == 18
        event = OutboxEvent.objects.get()
        assert (event.event_type, event.aggregate_id, event.published_at) == (
            "order.placed",
            str(order.pk),
            None,
        )

        down = proxied_publisher(broker_url, broker_proxy)
        try:
            assert outbox_relay_pending(publisher=down) == 0
        finally:
            down.close()
        event.refresh_from_db()
        assert event.published_at is None
        assert event.attempts >= 1
        assert event.last_error != ""
        assert queue.drain() == []

        broker_proxy.restore()
        back = proxied_publisher(broker_url, broker_proxy)
        try:
            assert outbox_relay_pending(publisher=back) == 1
            assert outbox_relay_pending(publisher=back) == 0
        finally:
            back.close()
        messages = queue.drain()

    event.refresh_from_db()
    assert event.published_at is not None
    assert message_ids(messages) == [str(event.id)]
    assert messages[0].payload["type"] == "order.placed"
    assert messages[0].payload["data"]["order_id"] == order.pk


def test_a_cut_in_the_middle_of_a_batch_stamps_only_confirmed_events(
    broker_url: str, broker_proxy: TcpProxy
) -> None:
    created = [
        events.event_record(
            event_type="order.test_cut", aggregate_type="test", aggregate_id=n, payload={"n": n}
        ).id
        for n in range(4)
    ]

    class CutAfterFirstConfirm(ConfirmedPublisher):
        def publish(self, event: OutboxEvent) -> None:
            super().publish(event)
            if len(self.confirmed) == 1:
                broker_proxy.cut()

    with event_queue(broker_url, routing_key="order.test_cut") as queue:
        publisher = CutAfterFirstConfirm(proxied_publisher(broker_url, broker_proxy))

        assert outbox_relay_batch(publisher=publisher) == 1

        stamped = set(
            OutboxEvent.objects.filter(published_at__isnull=False).values_list("id", flat=True)
        )
        assert publisher.confirmed == created[:1]
        assert stamped == set(publisher.confirmed)
        attempts = dict(OutboxEvent.objects.values_list("id", "attempts"))
        assert [attempts[event_id] for event_id in created] == [0, 1, 0, 0]
        assert message_ids(queue.drain()) == [str(created[0])]

        # The relay daemon keeps its publisher: it must reconnect once the broker is back.
        broker_proxy.restore()
        assert outbox_relay_batch(publisher=publisher) == 3
        publisher.close()
        received = message_ids(queue.drain())

    assert publisher.confirmed == created
    assert received == [str(event_id) for event_id in created[1:]]
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 0
