"""Row locks on orders: the one way any app locks an ``Order`` row.

Every writer that must see an order's current state and keep it until its
transaction ends (a status transition, starting a payment, creating a
shipment) takes the lock here. Several orders are always locked in
primary-key order, so two transactions that lock overlapping sets wait for
each other instead of deadlocking. A lock lasts until the transaction ends:
call these inside ``transaction.atomic`` and do no network I/O (e-mail, HTTP,
the payment provider) before it commits.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from emporium.orders.models import Order


def order_lock(*, order_id: int, user_id: int | None = None) -> Order:
    """The order, its row locked until the transaction ends.

    ``user_id`` restricts the lookup to that owner's order. Raises
    ``Order.DoesNotExist`` when there is no such order. Only the order's own
    row is locked (``of=("self",)``), never the rows of related tables.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("order_lock needs a transaction: the lock would end at once")
    lookup: dict[str, int] = {"pk": order_id}
    if user_id is not None:
        lookup["user_id"] = user_id
    return Order.objects.select_for_update(of=("self",)).get(**lookup)


def orders_lock(*, order_ids: Iterable[int]) -> list[Order]:
    """The orders that exist among ``order_ids``, locked in primary-key order."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("orders_lock needs a transaction: the locks would end at once")
    return list(
        Order.objects.select_for_update(of=("self",))
        .filter(pk__in=sorted(set(order_ids)))
        .order_by("pk")
    )
