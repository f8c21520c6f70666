"""orders_expire_unpaid: orders left unpaid past the timeout are cancelled, their stock freed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from emporium.accounts.models import User
from emporium.catalog.models import Product
from emporium.core.tests.factories import ProductFactory, UserFactory
from emporium.integrations.models import OutboxEvent
from emporium.orders import services, tasks
from emporium.orders.models import Order, OrderStatus, OrderStatusChange
from emporium.orders.tests.support import cart_fill, database_state, outbox, stock_of

pytestmark = pytest.mark.django_db

TIMEOUT = timedelta(minutes=30)


@pytest.fixture(autouse=True)
def _timeout(settings: Any) -> None:
    settings.EMPORIUM_ORDER_PAYMENT_TIMEOUT_SECONDS = int(TIMEOUT.total_seconds())


def placed(
    user: User, product: Product, *, quantity: int, age: timedelta, status: str | None = None
) -> Order:
    """A real checkout, then aged (and moved to ``status``) directly in the database."""
    cart_fill(user, [(product, quantity)])
    order = services.order_place(user_id=user.pk)
    changes: dict[str, Any] = {"created_at": timezone.now() - age}
    if status is not None:
        changes["order_status"] = status
    Order.objects.filter(pk=order.pk).update(**changes)
    return order


def status_of(order: Order) -> str:
    return str(Order.objects.values_list("order_status", flat=True).get(pk=order.pk))


def test_stale_unpaid_orders_are_cancelled_and_release_their_stock() -> None:
    user = UserFactory()
    first, second, third = (ProductFactory(stock_quantity=20) for _ in range(3))
    stale = placed(user, first, quantity=2, age=TIMEOUT + timedelta(seconds=5))
    stale_too = placed(user, second, quantity=3, age=timedelta(days=3))
    fresh = placed(user, first, quantity=4, age=TIMEOUT - timedelta(seconds=30))
    old_paid = placed(user, third, quantity=5, age=timedelta(hours=2), status=OrderStatus.PAID)
    old_ended = [
        placed(user, third, quantity=1, age=timedelta(hours=2), status=status)
        for status in (
            OrderStatus.SHIPPED,
            OrderStatus.DELIVERED,
            OrderStatus.CANCELLED,
            OrderStatus.PAYMENT_FAILED,
        )
    ]
    assert [stock_of(product) for product in (first, second, third)] == [14, 17, 11]
    OutboxEvent.objects.all().delete()

    expired = services.orders_expire_unpaid()

    assert expired == 2
    assert status_of(stale) == status_of(stale_too) == OrderStatus.CANCELLED
    assert status_of(fresh) == OrderStatus.PENDING_PAYMENT
    assert status_of(old_paid) == OrderStatus.PAID
    assert [status_of(order) for order in old_ended] == [
        "shipped",
        "delivered",
        "cancelled",
        "payment_failed",
    ]
    # first: 2 back (the fresh order keeps its 4); second: 3 back; third: untouched.
    assert [stock_of(product) for product in (first, second, third)] == [16, 20, 11]
    assert sorted(
        OrderStatusChange.objects.values_list(
            "order_id", "from_status", "to_status", "actor_id", "reason"
        )
    ) == [
        (stale.pk, "pending_payment", "cancelled", None, "payment timeout"),
        (stale_too.pk, "pending_payment", "cancelled", None, "payment timeout"),
    ]
    assert [row[2] for row in outbox("order.cancelled")] == sorted(
        [str(stale.pk), str(stale_too.pk)]
    )
    assert [row[0] for row in outbox()] == ["order.cancelled", "order.cancelled"]


def test_a_second_run_finds_nothing_to_do() -> None:
    product = ProductFactory(stock_quantity=10)
    placed(UserFactory(), product, quantity=3, age=timedelta(hours=1))
    assert services.orders_expire_unpaid() == 1
    after_first = database_state()

    assert services.orders_expire_unpaid() == 0
    assert database_state() == after_first
    assert stock_of(product) == 10


def test_the_periodic_task_uses_the_configured_timeout(settings: Any) -> None:
    settings.EMPORIUM_ORDER_PAYMENT_TIMEOUT_SECONDS = 60
    product = ProductFactory(stock_quantity=10)
    past_a_minute = placed(UserFactory(), product, quantity=1, age=timedelta(seconds=90))
    within_a_minute = placed(UserFactory(), product, quantity=1, age=timedelta(seconds=30))

    assert tasks.expire_unpaid() == 1
    assert tasks.expire_unpaid() == 0
    assert status_of(past_a_minute) == OrderStatus.CANCELLED
    assert status_of(within_a_minute) == OrderStatus.PENDING_PAYMENT
    assert stock_of(product) == 9


def test_an_explicit_age_overrides_the_setting() -> None:
    product = ProductFactory(stock_quantity=10)
    ten_minutes = placed(UserFactory(), product, quantity=2, age=timedelta(minutes=10))
    two_minutes = placed(UserFactory(), product, quantity=2, age=timedelta(minutes=2))

    assert services.orders_expire_unpaid(older_than=timedelta(minutes=5)) == 1
    assert status_of(ten_minutes) == OrderStatus.CANCELLED
    assert status_of(two_minutes) == OrderStatus.PENDING_PAYMENT
    assert stock_of(product) == 8


def test_nothing_to_expire() -> None:
    placed(UserFactory(), ProductFactory(stock_quantity=5), quantity=1, age=timedelta(minutes=1))
    before = database_state()

    assert services.orders_expire_unpaid() == 0
    assert database_state() == before
