"""The order status machine: order_transition, the cancel/ship/deliver actions, history."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from rest_framework.fields import DateTimeField
from rest_framework.test import APIClient

from conftest import require_service
from emporium.accounts.models import User
from emporium.catalog.models import Product
from emporium.core.tests.factories import (
    PaymentFactory,
    ProductFactory,
    StaffFactory,
    UserFactory,
    client_for,
)
from emporium.integrations.events import handlers_for
from emporium.integrations.models import OutboxEvent
from emporium.orders import services
from emporium.orders.models import Order, OrderStatus, OrderStatusChange
from emporium.orders.tests.support import (
    cart_fill,
    database_state,
    error_of,
    order_url,
    outbox,
    stock_of,
)
from emporium.orders.workflow import HOLDS_STOCK, TRANSITIONS, can_move
from emporium.payments.models import PaymentStatus
from tests.support.concurrency import run_concurrently

pytestmark = pytest.mark.django_db

STATUSES = list(OrderStatus.values)
ALL_PAIRS = [(source, target) for source in STATUSES for target in STATUSES]
LEGAL_PAIRS = [(source, target) for source in TRANSITIONS for target in TRANSITIONS[source]]
ILLEGAL_PAIRS = [pair for pair in ALL_PAIRS if pair not in LEGAL_PAIRS]
EVENT_FOR = {
    OrderStatus.PAID: "order.paid",
    OrderStatus.SHIPPED: "order.shipped",
    OrderStatus.DELIVERED: "order.delivered",
    OrderStatus.CANCELLED: "order.cancelled",
}
# Reaching these ends an order unfulfilled: the units it held go back on sale.
ENDS_UNFULFILLED = {OrderStatus.CANCELLED, OrderStatus.PAYMENT_FAILED}
INITIAL_STOCK = 10
ORDERED = 3


def pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}->{pair[1]}"


def timestamp(value: datetime.datetime) -> str:
    return DateTimeField().to_representation(value)


@pytest.fixture
def customer() -> User:
    return UserFactory()


@pytest.fixture
def product() -> Product:
    return ProductFactory(price=Decimal("4.25"), stock_quantity=INITIAL_STOCK)


def place_order(user: User, product: Product, quantity: int = ORDERED) -> Order:
    """A real checkout, so the order holds its stock as it would in production."""
    cart_fill(user, [(product, quantity)])
    return services.order_place(user_id=user.pk)


def order_in(status: str, user: User, product: Product) -> Order:
    """An order standing in ``status``, its stock still taken (as the real path leaves it)."""
    order = place_order(user, product)
    Order.objects.filter(pk=order.pk).update(order_status=status)
    OutboxEvent.objects.all().delete()  # only what the test itself causes is asserted
    order.refresh_from_db()
    return order


def test_the_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    assert sorted(map(pair_id, LEGAL_PAIRS)) == sorted(
        [
            "pending_payment->paid",
            "pending_payment->cancelled",
            "pending_payment->payment_failed",
            "paid->shipped",
            "paid->cancelled",
            "shipped->delivered",
        ]
    )
    assert len(ALL_PAIRS) == len(LEGAL_PAIRS) + len(ILLEGAL_PAIRS) == 36


# -- the service -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target"), LEGAL_PAIRS, ids=[pair_id(pair) for pair in LEGAL_PAIRS]
)
def test_legal_transition_moves_records_and_announces(
    customer: User, product: Product, source: str, target: str
) -> None:
    order = order_in(source, customer, product)
    actor = StaffFactory()

    moved = services.order_transition(
        order_id=order.pk, to_status=target, actor=actor, reason="because"
    )

    order.refresh_from_db()
    assert moved.order_status == order.order_status == target
    change = OrderStatusChange.objects.get()
    assert (change.order_id, change.from_status, change.to_status) == (order.pk, source, target)
    assert (change.actor_id, change.reason) == (actor.pk, "because")
    released = source in HOLDS_STOCK and target in ENDS_UNFULFILLED
    assert stock_of(product) == (INITIAL_STOCK if released else INITIAL_STOCK - ORDERED)
    expected_events = []
    if target in EVENT_FOR:
        expected_events.append(
            (
                EVENT_FOR[target],
                "order",
                str(order.pk),
                {
                    "order_id": order.pk,
                    "user_id": customer.pk,
                    "from": source,
                    "to": target,
                    "total_amount": "12.75",
                },
            )
        )
    assert outbox() == expected_events


@pytest.mark.parametrize(
    ("source", "target"), ILLEGAL_PAIRS, ids=[pair_id(pair) for pair in ILLEGAL_PAIRS]
)
def test_illegal_transition_is_refused_and_changes_nothing(
    customer: User, product: Product, source: str, target: str
) -> None:
    order = order_in(source, customer, product)
    before = database_state()

    with pytest.raises(services.IllegalTransition) as refused:
        services.order_transition(order_id=order.pk, to_status=target, actor=customer)

    assert refused.value.code == "illegal_transition"
    assert refused.value.status_code == 409
    assert refused.value.message == f"An order that is {source} cannot become {target}."
    assert refused.value.details == {"from": source, "to": target}
    assert database_state() == before


def test_system_transition_has_no_actor(customer: User, product: Product) -> None:
    order = place_order(customer, product)

    services.order_transition(order_id=order.pk, to_status=OrderStatus.PAID)

    change = OrderStatusChange.objects.get()
    assert (change.actor_id, change.reason) == (None, "")


def test_cancel_restores_stock_exactly_once(customer: User, product: Product) -> None:
    order = place_order(customer, product)
    assert stock_of(product) == INITIAL_STOCK - ORDERED

    services.order_cancel(order=order, actor=customer, reason="changed my mind")
    with pytest.raises(services.IllegalTransition):
        services.order_cancel(order=order, actor=customer)

    assert stock_of(product) == INITIAL_STOCK
    assert OrderStatusChange.objects.count() == 1
    assert len(outbox("order.cancelled")) == 1


def test_payment_failure_puts_the_stock_back_on_sale(customer: User, product: Product) -> None:
    """payment_failed is final: if it kept the units, they could never be sold again."""
    order = place_order(customer, product)

    services.order_transition(
        order_id=order.pk, to_status=OrderStatus.PAYMENT_FAILED, reason="declined"
    )

    assert stock_of(product) == INITIAL_STOCK
    assert TRANSITIONS[OrderStatus.PAYMENT_FAILED] == frozenset()


def test_cancel_restores_every_line_of_a_multi_product_order(customer: User) -> None:
    products = [ProductFactory(stock_quantity=stock) for stock in (5, 8, 13)]
    cart_fill(customer, [(products[2], 1), (products[0], 5), (products[1], 2)])
    order = services.order_place(user_id=customer.pk)
    assert [stock_of(product) for product in products] == [0, 6, 12]

    services.order_cancel(order=order, actor=customer)

    assert [stock_of(product) for product in products] == [5, 8, 13]


# -- the API ---------------------------------------------------------------------

ACTIONS = {
    "cancel": OrderStatus.CANCELLED,
    "ship": OrderStatus.SHIPPED,
    "deliver": OrderStatus.DELIVERED,
}
API_CASES = [(source, action) for source in STATUSES for action in ACTIONS]


@pytest.mark.parametrize(
    ("source", "action"), API_CASES, ids=[f"{source}-{action}" for source, action in API_CASES]
)
def test_api_actions_follow_the_state_machine(
    customer: User, product: Product, source: str, action: str
) -> None:
    order = order_in(source, customer, product)
    staff = StaffFactory()
    actor = customer if action == "cancel" else staff
    target = ACTIONS[action]
    before = database_state()

    response = client_for(actor).post(order_url(order.pk, action), format="json")

    order.refresh_from_db()
    if can_move(source, target):
        assert response.status_code == 200
        assert response.json()["order_status"] == target == order.order_status
        assert response.json()["id"] == order.pk
        change = OrderStatusChange.objects.get()
        assert (change.from_status, change.to_status, change.actor_id) == (
            source,
            target,
            actor.pk,
        )
    else:
        assert response.status_code == 409
        assert response.json() == {
            "error": {
                "code": "illegal_transition",
                "message": f"An order that is {source} cannot become {target}.",
                "details": {"from": source, "to": target},
            }
        }
        assert database_state() == before


def test_owner_cancels_with_a_reason(customer: User, product: Product) -> None:
    order = place_order(customer, product)
    client = client_for(customer)

    response = client.post(
        order_url(order.pk, "cancel"), {"reason": "found it cheaper"}, format="json"
    )
    again = client.post(order_url(order.pk, "cancel"), format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["order_status"], body["total_amount"]) == ("cancelled", "12.75")
    assert body == client.get(order_url(order.pk)).json()
    change = OrderStatusChange.objects.get()
    assert (change.actor_id, change.reason) == (customer.pk, "found it cheaper")
    assert again.status_code == 409
    assert error_of(again)["code"] == "illegal_transition"
    assert stock_of(product) == INITIAL_STOCK


def test_cancel_reason_is_validated(customer: User, product: Product) -> None:
    order = place_order(customer, product)
    before = database_state()

    response = client_for(customer).post(
        order_url(order.pk, "cancel"), {"reason": "x" * 256}, format="json"
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "validation_error"
    assert set(error_of(response)["details"]) == {"reason"}
    assert database_state() == before


def test_cancel_of_another_users_order_is_not_found(customer: User, product: Product) -> None:
    order = place_order(customer, product)
    before = database_state()

    response = client_for(UserFactory()).post(order_url(order.pk, "cancel"), format="json")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "Not found.", "details": {}}
    }
    assert database_state() == before


def test_staff_may_cancel_any_order(customer: User, product: Product) -> None:
    order = place_order(customer, product)
    staff = StaffFactory()

    response = client_for(staff).post(order_url(order.pk, "cancel"), format="json")

    assert response.status_code == 200
    assert OrderStatusChange.objects.get().actor_id == staff.pk
    assert stock_of(product) == INITIAL_STOCK


@pytest.mark.parametrize("action", ["cancel", "ship", "deliver", "history"])
def test_anonymous_is_unauthorised(customer: User, product: Product, action: str) -> None:
    order = place_order(customer, product)
    before = database_state()

    client = APIClient()
    response = (
        client.get(order_url(order.pk, action))
        if action == "history"
        else client.post(order_url(order.pk, action))
    )

    assert response.status_code == 401
    assert database_state() == before


@pytest.mark.parametrize("action", ["ship", "deliver"])
def test_customers_may_not_ship_or_deliver(customer: User, product: Product, action: str) -> None:
    source = OrderStatus.PAID if action == "ship" else OrderStatus.SHIPPED
    order = order_in(source, customer, product)
    before = database_state()

    response = client_for(customer).post(order_url(order.pk, action), format="json")

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert database_state() == before


def test_staff_ship_and_deliver_and_history_lists_every_change_in_order(
    customer: User, product: Product
) -> None:
    order = place_order(customer, product)
    staff = StaffFactory()
    staff_client = client_for(staff)
    services.order_transition(order_id=order.pk, to_status=OrderStatus.PAID, reason="paid")

    shipped = staff_client.post(order_url(order.pk, "ship"))
    delivered = staff_client.post(order_url(order.pk, "deliver"))
    history = client_for(customer).get(order_url(order.pk, "history"))

    assert (shipped.status_code, shipped.json()["order_status"]) == (200, "shipped")
    assert (delivered.status_code, delivered.json()["order_status"]) == (200, "delivered")
    assert history.status_code == 200
    changes = list(OrderStatusChange.objects.order_by("id"))
    assert history.json() == [
        {
            "id": change.pk,
            "from_status": source,
            "to_status": target,
            "actor": actor,
            "reason": reason,
            "created_at": timestamp(change.created_at),
        }
        for change, (source, target, actor, reason) in zip(
            changes,
            [
                ("pending_payment", "paid", None, "paid"),
                ("paid", "shipped", staff.pk, ""),
                ("shipped", "delivered", staff.pk, ""),
            ],
            strict=True,
        )
    ]
    assert staff_client.get(order_url(order.pk, "history")).json() == history.json()
    assert stock_of(product) == INITIAL_STOCK - ORDERED  # delivered goods stay sold
    assert [row[0] for row in outbox()] == [
        "order.delivered",
        "order.paid",
        "order.placed",
        "order.shipped",
    ]


def test_history_of_a_new_order_is_empty_and_private(customer: User, product: Product) -> None:
    order = place_order(customer, product)

    own = client_for(customer).get(order_url(order.pk, "history"))
    foreign = client_for(UserFactory()).get(order_url(order.pk, "history"))

    assert (own.status_code, own.json()) == (200, [])
    assert foreign.status_code == 404


def _relay_handlers_run(event_type: str) -> None:
    """What the outbox relay does with each recorded event of ``event_type``: its handlers."""
    for event in OutboxEvent.objects.filter(event_type=event_type, published_at__isnull=True):
        for handler in handlers_for(event_type):
            handler(event)


def test_cancelling_a_paid_order_requests_a_refund_of_its_payment_through_the_outbox(
    customer: User, product: Product
) -> None:
    order = order_in(OrderStatus.PAID, customer, product)
    PaymentFactory(order=order, amount=Decimal("12.75"), status=PaymentStatus.FAILED)
    succeeded = PaymentFactory(order=order, amount=Decimal("12.75"), status=PaymentStatus.SUCCEEDED)

    response = client_for(customer).post(order_url(order.pk, "cancel"), format="json")

    assert response.status_code == 200
    ((_, _, _, cancelled),) = outbox("order.cancelled")
    assert (cancelled["from"], cancelled["to"]) == ("paid", "cancelled")
    # The orders app records the cancellation only; payments react to its event.
    assert outbox("payment.refund_requested") == []

    _relay_handlers_run("order.cancelled")

    assert outbox("payment.refund_requested") == [
        (
            "payment.refund_requested",
            "payment",
            str(succeeded.pk),
            {"payment_id": succeeded.pk, "order_id": order.pk, "amount": "12.75"},
        )
    ]
    succeeded.refresh_from_db()
    assert succeeded.status == PaymentStatus.SUCCEEDED  # refunded later, through the gateway
    assert stock_of(product) == INITIAL_STOCK


def test_cancelling_an_unpaid_order_requests_no_refund(customer: User, product: Product) -> None:
    order = place_order(customer, product)
    PaymentFactory(order=order, amount=Decimal("12.75"), status=PaymentStatus.FAILED)

    client_for(customer).post(order_url(order.pk, "cancel"), format="json")
    _relay_handlers_run("order.cancelled")

    assert len(outbox("order.cancelled")) == 1
    assert outbox("payment.refund_requested") == []


# -- racing cancels (PostgreSQL) -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_racing_cancels_restore_stock_exactly_once(settings: Any) -> None:
    require_service("DATABASE_URL")
    assert connection.vendor == "postgresql"
    product = ProductFactory(stock_quantity=100)
    owner = UserFactory()
    orders = [place_order(owner, product, quantity=2) for _ in range(10)]
    assert stock_of(product) == 80
    # Each order is cancelled twice at the same moment, from two threads.
    attempts = [(client_for(owner), order.pk) for order in orders for _ in range(2)]

    def cancel(attempt: tuple[APIClient, int]) -> tuple[int, int, str]:
        client, order_id = attempt
        response = client.post(order_url(order_id, "cancel"), format="json")
        code = "" if response.status_code == 200 else response.json()["error"]["code"]
        return order_id, response.status_code, code

    results = run_concurrently(cancel, attempts, workers=len(attempts))

    for order in orders:
        outcomes = sorted(
            (status, code) for order_id, status, code in results if order_id == order.pk
        )
        assert outcomes == [(200, ""), (409, "illegal_transition")], order.pk
    assert stock_of(product) == 100
    assert OrderStatusChange.objects.filter(to_status=OrderStatus.CANCELLED).count() == 10
    assert len(outbox("order.cancelled")) == 10
    assert set(Order.objects.values_list("order_status", flat=True)) == {OrderStatus.CANCELLED}
