"""Checkout and the order lifecycle.

Stock moves only through conditional UPDATEs (``… WHERE stock_quantity >= n``)
issued in product-id order, so concurrent checkouts can neither oversell nor
deadlock; the ``stock_quantity >= 0`` check constraint is the backstop. Every
status change goes through :func:`order_transition`, which locks the order
row, checks the state machine and records who moved it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, models, transaction
from django.db.models import F
from django.utils import timezone

from emporium.accounts.models import User
from emporium.carts.models import CartItem, ShoppingCart
from emporium.catalog import services as catalog_services
from emporium.catalog.models import Product
from emporium.core import correlation
from emporium.core.errors import Conflict
from emporium.integrations import events
from emporium.observability import domain_metrics
from emporium.orders.locks import order_lock
from emporium.orders.models import Order, OrderItem, OrderStatus, OrderStatusChange
from emporium.orders.workflow import HOLDS_STOCK, RELEASES_STOCK, can_move
from emporium.realtime import services as realtime_services


class CartEmpty(Conflict):
    code = "cart_empty"
    default_message = "The cart is empty; add products before checking out."


class OutOfStock(Conflict):
    code = "insufficient_stock"
    default_message = "Some products in the cart are not available in the requested quantity."


class IllegalTransition(Conflict):
    code = "illegal_transition"


@dataclass(frozen=True)
class _Line:
    product_id: int
    quantity: int


def _low_stock_threshold() -> int:
    return int(getattr(settings, "EMPORIUM_LOW_STOCK_THRESHOLD", 5))


@dataclass(frozen=True)
class _Taken:
    price: Decimal
    stock_left: int
    name: str


_CENT = Decimal("0.01")


def stock_take(*, lines: list[_Line]) -> tuple[dict[int, _Taken], list[dict[str, object]]]:
    """Decrements stock for every line, in product-id order.

    Returns what was taken (with the price at that instant) and the shortages.
    Each UPDATE succeeds only if enough stock is left at that instant, and holds
    the row lock until the caller's transaction ends, so the price it returns
    cannot change before the order is committed. The caller must roll back
    when shortages are returned.

    The statement is written out because the ORM's update() cannot return the
    row: RETURNING saves a second query per checkout (PostgreSQL, SQLite 3.35+).
    """
    table = connection.ops.quote_name(Product._meta.db_table)
    sql = (
        f"UPDATE {table} SET stock_quantity = stock_quantity - %s, updated_at = %s "  # noqa: S608 (constant table names)
        "WHERE id = %s AND stock_quantity >= %s RETURNING price, stock_quantity, name"
    )
    now = timezone.now()
    taken: dict[int, _Taken] = {}
    short: list[dict[str, object]] = []
    with connection.cursor() as cursor:
        for line in sorted(lines, key=lambda line: line.product_id):
            cursor.execute(sql, [line.quantity, now, line.product_id, line.quantity])
            row = cursor.fetchone()
            if row is None:
                short.append({"product": line.product_id, "requested": line.quantity})
            else:
                # SQLite hands numeric columns back as floats; two places are exact.
                price = Decimal(str(row[0])).quantize(_CENT)
                taken[line.product_id] = _Taken(price=price, stock_left=int(row[1]), name=row[2])
    if taken:
        # Bumped only if the caller commits; its rollback on shortages discards this.
        catalog_services.product_cache_invalidate(product_ids=taken, names_changed=False)
    return taken, short


def stock_release(*, lines: list[_Line]) -> None:
    """Puts the lines' quantities back; a product that had none left records back-in-stock."""
    for line in sorted(lines, key=lambda line: line.product_id):
        Product.objects.filter(pk=line.product_id).update(
            stock_quantity=F("stock_quantity") + line.quantity, updated_at=timezone.now()
        )
    released: dict[int, int] = {}
    for line in lines:
        released[line.product_id] = released.get(line.product_id, 0) + line.quantity
    for product_id, name, stock in Product.objects.filter(pk__in=released).values_list(
        "pk", "name", "stock_quantity"
    ):
        if stock - released[product_id] <= 0 < stock:
            catalog_services.product_back_in_stock_record(
                product_id=product_id, name=name, stock_quantity=stock
            )
    catalog_services.product_cache_invalidate(
        product_ids=[line.product_id for line in lines], names_changed=False
    )


def _cart_lock(*, user_id: int) -> int | None:
    """Locks the user's cart row, if there is one, until the transaction ends.

    Two checkouts of one cart (a double submit) then run one after the other
    and the second finds the cart empty. FOR NO KEY UPDATE does not block
    adding items, which needs only a key-share lock on the cart row.
    """
    return (
        ShoppingCart.objects.select_for_update(no_key=True)
        .filter(user_id=user_id)
        .values_list("pk", flat=True)
        .first()
    )


def order_place(
    *, user_id: int, shipping_address: str | None = None, phone: str | None = None
) -> Order:
    """Turns the user's cart into a pending order in one transaction.

    On PostgreSQL the whole checkout is one statement (``emporium_order_place``,
    defined in orders/sql/order_place.sql); elsewhere the same steps run from Python.
    Both return the order with its items attached, so nothing is read back. The
    shipping address and phone are sealed in Python before either path writes
    them (docs/adr/0022-encryption-at-rest.md).
    """
    place = _order_place_postgresql if connection.vendor == "postgresql" else _order_place_portable
    try:
        order = place(user_id=user_id, shipping_address=shipping_address, phone=phone)
    except (CartEmpty, OutOfStock) as refusal:
        domain_metrics.CHECKOUT_REFUSALS.labels(refusal.code).inc()
        raise
    domain_metrics.CHECKOUT_ORDERS.inc()
    return order


class InactiveUser(Exception):
    """The token's user no longer exists or was deactivated (the API answers 401)."""


_SEALED_AT_CHECKOUT = ("shipping_address", "phone", "phone_index")


def _sealed_at_checkout(order: Order) -> list[object]:
    """What the ORM would write to the sealed columns of this new order (the fields seal)."""
    values = []
    for name in _SEALED_AT_CHECKOUT:
        field = Order._meta.get_field(name)
        if not isinstance(field, models.Field):
            raise TypeError(f"Order.{name} is not a column")
        values.append(field.get_db_prep_save(field.pre_save(order, add=True), connection))
    return values


# Every argument by name (orders/sql/order_place.sql): adding one cannot shift the others.
_ORDER_PLACE_CALL = (
    "SELECT order_id, placed_at, total, items, event_id FROM emporium_order_place("
    "p_user_id => %(user_id)s, p_low_stock => %(low_stock)s, p_row_uuid => %(row_uuid)s,"
    " p_shipping_address => %(shipping_address)s, p_phone => %(phone)s,"
    " p_phone_index => %(phone_index)s, p_status => %(status)s,"
    " p_order_placed => %(order_placed)s, p_stock_low => %(stock_low)s,"
    " p_correlation => %(correlation)s::jsonb)"
)


def _order_place_postgresql(
    *, user_id: int, shipping_address: str | None = None, phone: str | None = None
) -> Order:
    order = Order(
        user_id=user_id,
        order_status=OrderStatus.PENDING_PAYMENT,
        shipping_address=shipping_address,
        phone=phone,
    )
    sealed_address, sealed_phone, phone_index = _sealed_at_checkout(order)
    # The names the database writes come from Python: the status and the event types.
    arguments: dict[str, Any] = {
        "user_id": user_id,
        "low_stock": _low_stock_threshold(),
        "row_uuid": order.row_uuid,
        "shipping_address": sealed_address,
        "phone": sealed_phone,
        "phone_index": phone_index,
        "status": str(OrderStatus.PENDING_PAYMENT),
        "order_placed": events.ORDER_PLACED,
        "stock_low": events.STOCK_LOW,
        "correlation": json.dumps(correlation.carrier()),
    }

    def place() -> tuple[int, datetime, str, str, int]:
        with connection.cursor() as cursor:
            cursor.execute(_ORDER_PLACE_CALL, arguments)
            return cursor.fetchone()

    try:
        if connection.in_atomic_block:
            # Inside a caller's transaction a refusal must only undo this checkout.
            with transaction.atomic():
                order_id, placed_at, total, items, event_id = place()
        else:
            order_id, placed_at, total, items, event_id = place()  # autocommit: one round trip
    except DatabaseError as error:
        _raise_refusal(error)
        raise
    _order_built(order, order_id=order_id, placed_at=placed_at, total=Decimal(total))
    # The rows the statement wrote, as loaded from the database (Model.from_db).
    order_items = [
        OrderItem.from_db(
            connection.alias,
            _ORDER_ITEM_COLUMNS,
            [
                item["id"],
                placed_at,
                placed_at,
                order_id,
                item["product_id"],
                item["quantity"],
                Decimal(item["price"]),
                item["name"],
            ],
        )
        # Django has psycopg hand jsonb over as text (JSONField decodes it itself).
        for item in json.loads(items)
    ]
    for item in order_items:
        item.order = order
    # Django has no public way to hand a relation the rows it would prefetch;
    # without this the response would read back the items just written.
    order._prefetched_objects_cache = {"items": order_items}  # type: ignore[attr-defined]
    # What stock_take and event_record arrange on the portable path, after commit
    # (at once when there is no outer transaction): fresh catalog reads, relay nudge.
    catalog_services.product_cache_invalidate(
        product_ids=[item.product_id for item in order_items], names_changed=False
    )
    realtime_services.order_placed_announce(order=order, event_id=event_id)
    events.event_hooks_after_commit()
    return order


def _raise_refusal(error: DatabaseError) -> None:
    """Turns the function's refusals (SQLSTATE EM401/EM404/EM409) into domain errors."""
    cause = error.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate == "EM401":
        raise InactiveUser() from error
    if sqlstate == "EM404":
        raise CartEmpty() from error
    if sqlstate == "EM409":
        short = json.loads(getattr(getattr(cause, "diag", None), "message_detail", "") or "[]")
        raise OutOfStock(_short_message(short), details={"products": short}) from error


def _short_message(short: list[dict[str, Any]]) -> str:
    return f"Not enough stock for: {', '.join(str(entry['name']) for entry in short)}."


_ORDER_ITEM_COLUMNS = [
    "id",
    "created_at",
    "updated_at",
    "order_id",
    "product_id",
    "quantity",
    "price",
    "product_name",
]


def _order_built(order: Order, *, order_id: int, placed_at: datetime, total: Decimal) -> None:
    """Gives the order the statement wrote what the database chose: id, times, total."""
    order.pk = order_id
    order.total_amount = total
    order.created_at = placed_at
    order.updated_at = placed_at
    # Model.from_db would make a new instance; the caller's one is marked as
    # stored in place (no public API does that for an existing instance).
    order._state.adding = False
    order._state.db = connection.alias


def _order_place_portable(
    *, user_id: int, shipping_address: str | None = None, phone: str | None = None
) -> Order:
    """The checkout as ORM steps, for databases without ``emporium_order_place``."""
    with transaction.atomic():
        if not User.objects.filter(pk=user_id, is_active=True).exists():
            raise InactiveUser()
        cart_id = _cart_lock(user_id=user_id)
        cart_lines = list(
            CartItem.objects.filter(cart_id=cart_id)
            .order_by("product_id")
            .values_list("pk", "product_id", "quantity")
        )
        if cart_id is None or not cart_lines:
            raise CartEmpty()
        lines = [_Line(product_id, quantity) for _, product_id, quantity in cart_lines]
        taken, short = stock_take(lines=lines)
        if short:
            products = Product.objects.in_bulk([entry["product"] for entry in short])
            for entry in short:
                product = products.get(int(str(entry["product"])))
                entry["name"] = product.name if product else None
                entry["available"] = product.stock_quantity if product else 0
            raise OutOfStock(_short_message(short), details={"products": short})
        total = sum(
            (taken[line.product_id].price * line.quantity for line in lines), Decimal("0.00")
        )
        order = Order.objects.create(
            user_id=user_id,
            order_status=OrderStatus.PENDING_PAYMENT,
            total_amount=total,
            shipping_address=shipping_address,
            phone=phone,
        )
        realtime_services.order_placed_record(order=order)
        items = OrderItem.objects.bulk_create(
            [
                OrderItem(
                    order=order,
                    product_id=line.product_id,
                    quantity=line.quantity,
                    price=taken[line.product_id].price,
                    product_name=taken[line.product_id].name,
                )
                for line in lines
            ]
        )
        # Only the lines bought: one added while this checkout ran stays in the cart.
        CartItem.objects.filter(pk__in=[pk for pk, _, _ in cart_lines]).delete()
        events.event_record(
            event_type=events.ORDER_PLACED,
            aggregate_type="order",
            aggregate_id=order.pk,
            payload={
                "order_id": order.pk,
                "user_id": user_id,
                "total_amount": str(total),
                "items": [
                    {
                        "product_id": line.product_id,
                        "quantity": line.quantity,
                        "price": str(taken[line.product_id].price),
                    }
                    for line in lines
                ],
            },
        )
        threshold = _low_stock_threshold()
        for line in lines:
            left = taken[line.product_id].stock_left
            if left <= threshold < left + line.quantity:
                events.event_record(
                    event_type=events.STOCK_LOW,
                    aggregate_type="product",
                    aggregate_id=line.product_id,
                    payload={"product_id": line.product_id, "stock_quantity": left},
                )
    # The response shows the items just written; hand them over instead of re-reading
    # (Django has no public way to fill a prefetch cache).
    order._prefetched_objects_cache = {"items": items}  # type: ignore[attr-defined]
    return order


def _order_lines(order: Order) -> list[_Line]:
    return [
        _Line(product_id, quantity)
        for product_id, quantity in OrderItem.objects.filter(order=order).values_list(
            "product_id", "quantity"
        )
    ]


_EVENT_FOR_STATUS: dict[str, str] = {
    OrderStatus.PAID: events.ORDER_PAID,
    OrderStatus.CANCELLED: events.ORDER_CANCELLED,
    OrderStatus.SHIPPED: events.ORDER_SHIPPED,
    OrderStatus.DELIVERED: events.ORDER_DELIVERED,
}


def order_transition(
    *, order_id: int, to_status: str, actor: User | None = None, reason: str = ""
) -> Order:
    """Moves an order to ``to_status`` if the state machine allows it, exactly once.

    The order row is locked first, so of two racing moves (say, two cancels)
    one wins and the other sees the new state and is refused. Cancelling an
    order that still holds stock, or failing its payment, releases the stock
    here, in the same transaction.
    """
    with transaction.atomic():
        order = order_lock(order_id=order_id)
        from_status = order.order_status
        if not can_move(from_status, to_status):
            raise IllegalTransition(
                f"An order that is {from_status} cannot become {to_status}.",
                details={"from": from_status, "to": to_status},
            )
        if to_status in RELEASES_STOCK and from_status in HOLDS_STOCK:
            stock_release(lines=_order_lines(order))
        order.order_status = to_status
        order.save(update_fields=["order_status", "updated_at"])
        change = OrderStatusChange.objects.create(
            order=order, from_status=from_status, to_status=to_status, actor=actor, reason=reason
        )
        # The customer's notifications follow from the domain event recorded below.
        realtime_services.order_change_publish(change=change, user_id=order.user_id)
        event_type = _EVENT_FOR_STATUS.get(to_status)
        if event_type:
            events.event_record(
                event_type=event_type,
                aggregate_type="order",
                aggregate_id=order.pk,
                payload={
                    "order_id": order.pk,
                    "user_id": order.user_id,
                    "from": from_status,
                    "to": to_status,
                    "total_amount": str(order.total_amount),
                },
            )
        # A paid order that is cancelled is refunded by the payments app, which
        # reacts to the order.cancelled event recorded above (its "from" is "paid").
    return order


def order_cancel(*, order: Order, actor: User | None, reason: str = "") -> Order:
    return order_transition(
        order_id=order.pk, to_status=OrderStatus.CANCELLED, actor=actor, reason=reason
    )


def orders_expire_unpaid(*, older_than: timedelta | None = None) -> int:
    """Cancels orders left unpaid too long, releasing their stock; returns how many."""
    age = older_than or timedelta(seconds=settings.EMPORIUM_ORDER_PAYMENT_TIMEOUT_SECONDS)
    cutoff = timezone.now() - age
    expired = 0
    stale_ids = Order.objects.filter(
        order_status=OrderStatus.PENDING_PAYMENT, created_at__lt=cutoff
    ).values_list("pk", flat=True)
    for order_id in list(stale_ids[:1000]):
        try:
            order_transition(
                order_id=order_id, to_status=OrderStatus.CANCELLED, reason="payment timeout"
            )
        except IllegalTransition:
            continue  # paid or cancelled meanwhile
        expired += 1
    return expired


def order_confirmation_record(*, order_id: int) -> bool:
    """Stamps the confirmation e-mail as sent; False if it already was.

    A conditional UPDATE, run after the message was handed to the mail server
    and outside any lock: recording the same confirmation twice changes nothing.
    """
    return bool(
        Order.objects.filter(pk=order_id, confirmation_sent_at__isnull=True).update(
            confirmation_sent_at=timezone.now()
        )
    )
