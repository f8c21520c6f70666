"""Domain events become notifications once, however often they are delivered."""

from __future__ import annotations

from decimal import Decimal

import pytest

from emporium.catalog import services as catalog_services
from emporium.core.tests.factories import OrderFactory, ProductFactory, UserFactory
from emporium.integrations import events
from emporium.notifications import tasks
from emporium.notifications.channels.models import Delivery
from emporium.notifications.models import Dispatch, Notification
from emporium.notifications.tests.support import inbox, record_event
from emporium.orders.models import OrderStatus
from emporium.orders.services import order_transition
from emporium.wishlists.services import wishlist_item_add

pytestmark = pytest.mark.django_db


def test_every_handled_event_type_has_the_trigger_registered() -> None:
    for event_type in (
        events.ORDER_PLACED,
        events.ORDER_PAID,
        events.ORDER_SHIPPED,
        events.ORDER_DELIVERED,
        events.ORDER_CANCELLED,
        events.PAYMENT_FAILED,
        events.PRODUCT_PRICE_DROPPED,
        events.PRODUCT_BACK_IN_STOCK,
    ):
        assert tasks._queue_notify in events.handlers_for(event_type), event_type


def test_an_event_delivered_twice_notifies_once_on_every_channel() -> None:
    customer = UserFactory()
    event = record_event(
        events.ORDER_SHIPPED,
        {"order_id": 41, "user_id": customer.pk, "from": "paid", "to": "shipped"},
    )
    assert tasks.event_notify(str(event.pk)) == 3  # in-app, e-mail, push
    assert tasks.event_notify(str(event.pk)) == 0  # the relay delivered it again

    [notification] = Notification.objects.filter(recipient=customer)
    assert (notification.kind, notification.title) == ("order_shipped", "Order 41 has shipped")
    assert notification.data == {"order_id": 41, "order_status": "shipped"}
    assert notification.dedup_key == f"event:{event.pk}"
    deliveries = Delivery.objects.filter(recipient=customer).order_by("channel")
    assert [(row.channel, row.kind, row.dedup_key) for row in deliveries] == [
        ("email", "order_shipped", f"{customer.pk}:event:{event.pk}"),
        ("push", "order_shipped", f"{customer.pk}:event:{event.pk}"),
    ]
    assert Dispatch.objects.filter(recipient=customer).count() == 3


def test_order_lifecycle_events_from_the_orders_service() -> None:
    customer = UserFactory()
    order = OrderFactory(user=customer, order_status=OrderStatus.PENDING_PAYMENT)
    order_transition(order_id=order.pk, to_status=OrderStatus.PAID)
    order_transition(order_id=order.pk, to_status=OrderStatus.SHIPPED)
    order_transition(order_id=order.pk, to_status=OrderStatus.DELIVERED)
    from emporium.integrations.models import OutboxEvent

    for event in OutboxEvent.objects.order_by("created_at", "id"):
        tasks.event_notify(str(event.pk))
    assert inbox(customer) == [
        ("payment_succeeded", f"Payment received for order {order.pk}"),
        ("order_shipped", f"Order {order.pk} has shipped"),
        ("order_delivered", f"Order {order.pk} was delivered"),
    ]


def test_a_placed_order_is_not_emailed_here_the_orders_app_sends_its_receipt() -> None:
    customer = UserFactory()
    event = record_event(
        events.ORDER_PLACED, {"order_id": 7, "user_id": customer.pk, "total_amount": "12.5"}
    )
    tasks.event_notify(str(event.pk))
    [notification] = Notification.objects.filter(recipient=customer)
    assert notification.body == "We received your order 7 (12.50). We will tell you when it ships."
    assert list(Delivery.objects.filter(recipient=customer).values_list("channel", flat=True)) == [
        "push"
    ]


def test_payment_failed_goes_to_the_orders_owner() -> None:
    customer = UserFactory()
    order = OrderFactory(user=customer)
    event = record_event(events.PAYMENT_FAILED, {"payment_id": 5, "order_id": order.pk})
    tasks.event_notify(str(event.pk))
    assert inbox(customer) == [("payment_failed", f"Payment failed for order {order.pk}")]
    assert Delivery.objects.get(recipient=customer, channel="email").critical is True


def test_a_price_drop_and_a_restock_reach_everyone_wishlisting_the_product() -> None:
    fans = [UserFactory() for _ in range(3)]
    bystander = UserFactory()
    product = ProductFactory(name="Kettle", price=Decimal("40.00"), stock_quantity=0)
    other = ProductFactory()
    for fan in fans:
        wishlist_item_add(user=fan, product=product)
    wishlist_item_add(user=bystander, product=other)

    catalog_services.product_update(product=product, price=Decimal("45.00"))  # up: nothing
    catalog_services.product_update(product=product, price=Decimal("30.00"))
    catalog_services.product_update(product=product, stock_quantity=5)
    catalog_services.product_update(product=product, stock_quantity=4)  # not a restock
    from emporium.integrations.models import OutboxEvent

    recorded = list(OutboxEvent.objects.order_by("created_at", "id"))
    assert [event.event_type for event in recorded] == [
        "product.price_dropped",
        "product.back_in_stock",
    ]
    for event in recorded:
        tasks.event_notify(str(event.pk))
        tasks.event_notify(str(event.pk))
    for fan in fans:
        assert inbox(fan) == [
            ("price_dropped", "Price drop: Kettle"),
            ("back_in_stock", "Back in stock: Kettle"),
        ]
    assert inbox(bystander) == []
    drop = Notification.objects.filter(kind="price_dropped").first()
    assert drop is not None
    assert drop.data == {"product_id": product.pk, "old_price": "45.00", "new_price": "30.00"}


def test_a_cancelled_order_releasing_the_last_stock_records_back_in_stock() -> None:
    from emporium.core.tests.factories import OrderItemFactory
    from emporium.integrations.models import OutboxEvent

    product = ProductFactory(stock_quantity=0)
    order = OrderFactory(order_status=OrderStatus.PENDING_PAYMENT)
    OrderItemFactory(order=order, product=product, quantity=2)
    order_transition(order_id=order.pk, to_status=OrderStatus.CANCELLED)
    restock = OutboxEvent.objects.get(event_type=events.PRODUCT_BACK_IN_STOCK)
    assert restock.payload["product_id"] == product.pk
    assert restock.payload["stock_quantity"] == 2
