"""Writes of the real-time streams, and publishing them once the transaction commits.

Order and notification events are rows first (their ids order the stream
and let a client catch up with ``?since=``) and pushes second: the push is
registered with ``transaction.on_commit``, so a rolled-back change is never
announced. Positions are not stored here at all: telemetry ingestion notes
the newest position per device, and a flusher publishes them at most once
per ``EMPORIUM_REALTIME_POSITION_FLUSH_SECONDS`` per process.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from emporium.delivery.models import Shipment, ShipmentStatus
from emporium.delivery.validation import ValidPoint
from emporium.orders.models import Order, OrderStatus, OrderStatusChange
from emporium.realtime import groups
from emporium.realtime.models import Notification, NotificationKind, OrderEvent
from emporium.realtime.transport import dumps, publish_text

logger = logging.getLogger(__name__)


def publish_after_commit(group: str, payload: Any) -> None:
    """Publishes ``payload`` to ``group`` once the current transaction commits.

    Serialised now, once, whatever the number of receivers. Outside a
    transaction it publishes at once; after a rollback, never.
    """
    text = dumps(payload)
    transaction.on_commit(lambda: publish_text(group, text))


# -- order events ---------------------------------------------------------------------


def order_event(event: OrderEvent) -> dict[str, Any]:
    """The shape of an order event, on the socket and over REST alike."""
    return {
        "id": event.pk,
        "type": "order.status_changed",
        "order_id": event.order_id,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "reason": event.reason,
        "created_at": event.created_at.isoformat(),
    }


def _order_event_record(
    *, user_id: int, order_id: int, from_status: str, to_status: str, reason: str = ""
) -> OrderEvent:
    event = OrderEvent.objects.create(
        user_id=user_id,
        order_id=order_id,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
    )
    publish_after_commit(groups.user_orders(user_id), order_event(event))
    return event


_NOTIFICATION_FOR_STATUS: dict[str, tuple[str, str]] = {
    OrderStatus.PAID: (NotificationKind.PAYMENT_SUCCEEDED, "Payment received for order {order}"),
    OrderStatus.PAYMENT_FAILED: (
        NotificationKind.PAYMENT_FAILED,
        "Payment failed for order {order}",
    ),
    OrderStatus.SHIPPED: (NotificationKind.ORDER_SHIPPED, "Order {order} has shipped"),
    OrderStatus.DELIVERED: (NotificationKind.ORDER_DELIVERED, "Order {order} was delivered"),
    OrderStatus.CANCELLED: (NotificationKind.ORDER_CANCELLED, "Order {order} was cancelled"),
}


def order_change_publish(*, change: OrderStatusChange, user_id: int) -> None:
    """Announces a recorded status change to the order's owner after commit.

    Called inside the transaction that wrote ``change``: one ``OrderEvent``
    row, and for the changes a customer should hear about (paid, payment
    failed, shipped, delivered, cancelled) one notification row as well.
    """
    _order_event_record(
        user_id=user_id,
        order_id=change.order_id,
        from_status=change.from_status,
        to_status=change.to_status,
        reason=change.reason,
    )
    notification = _NOTIFICATION_FOR_STATUS.get(change.to_status)
    if notification is not None:
        kind, title = notification
        notification_create(
            user_id=user_id,
            kind=kind,
            title=title.format(order=change.order_id),
            data={"order_id": change.order_id, "order_status": change.to_status},
        )


def order_placed_record(*, order: Order) -> OrderEvent:
    """Records the placement of ``order`` as the first event of its owner's stream.

    One INSERT in the checkout's transaction; the push follows the commit.
    """
    return _order_event_record(
        user_id=order.user_id, order_id=order.pk, from_status="", to_status=order.order_status
    )


def order_placed_announce(*, order: Order, event_id: int) -> None:
    """Publishes a placement whose ``OrderEvent`` row was written in SQL (row ``event_id``).

    PostgreSQL's checkout statement (orders/0004) writes the row itself.
    """
    event = OrderEvent(
        pk=event_id,
        user_id=order.user_id,
        order_id=order.pk,
        from_status="",
        to_status=order.order_status,
        created_at=order.created_at,
    )
    publish_after_commit(groups.user_orders(order.user_id), order_event(event))


# -- notifications ----------------------------------------------------------------------


def notification_event(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "type": "notification",
        "kind": notification.kind,
        "title": notification.title,
        "data": notification.data,
        "created_at": notification.created_at.isoformat(),
    }


def notification_create(
    *, user_id: int, kind: str, title: str, data: dict[str, Any] | None = None
) -> Notification:
    notification = Notification.objects.create(
        user_id=user_id, kind=kind, title=title, data=data or {}
    )
    publish_after_commit(groups.user_notifications(user_id), notification_event(notification))
    return notification


# -- live positions -----------------------------------------------------------------------


class _Position:
    __slots__ = ("latitude", "longitude", "recorded_at")

    def __init__(self, latitude: float, longitude: float, recorded_at: datetime) -> None:
        self.latitude = latitude
        self.longitude = longitude
        self.recorded_at = recorded_at


class PositionCoalescer:
    """The newest position per device since the last flush, published at most once a period.

    Ingestion only replaces a dict entry; a daemon thread (one per process,
    started on first use, restarted after a fork) swaps the dict out and
    publishes, so however many batches arrive, each shipment's subscribers and
    the dashboard get one message per period from this process.
    """

    def __init__(self) -> None:
        self._latest: dict[int, _Position] = {}
        self._lock = threading.Lock()
        self._thread_pid: int | None = None

    def note(self, device_id: int, position: _Position) -> None:
        with self._lock:
            current = self._latest.get(device_id)
            if current is None or position.recorded_at > current.recorded_at:
                self._latest[device_id] = position
        if self._thread_pid != os.getpid():
            self._start_thread()

    def take(self) -> dict[int, _Position]:
        with self._lock:
            latest, self._latest = self._latest, {}
        return latest

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread_pid == os.getpid():
                return
            self._thread_pid = os.getpid()
        threading.Thread(target=self._run, name="realtime-positions", daemon=True).start()

    def _run(self) -> None:
        period = float(settings.EMPORIUM_REALTIME_POSITION_FLUSH_SECONDS)
        stop = threading.Event()
        while not stop.wait(period):
            try:
                moved = positions_flush()
            except Exception:  # a failed flush must not end the thread
                logger.exception("could not publish live positions")
                moved = 1
            # Nothing noted, nothing queried: an idle process never opens a connection here.
            if moved:
                close_own_connection()


COALESCER = PositionCoalescer()


def close_own_connection() -> None:
    """Closes this thread's database connection: at most one query a second needs no
    persistent connection, and one left open would outlive the process's requests."""
    try:
        connection.close()
    except Exception:
        logger.exception("could not close the live positions thread's connection")


def positions_note(*, device_id: int, points: Sequence[ValidPoint]) -> None:
    """Remembers the newest of ``points`` (just stored) once the transaction commits."""
    if not points:
        return
    newest = max(points, key=attrgetter("recorded_at"))
    position = _Position(newest.latitude, newest.longitude, newest.recorded_at)
    transaction.on_commit(lambda: COALESCER.note(device_id, position))


def positions_flush() -> int:
    """Publishes the positions noted since the last flush; returns how many devices moved.

    One query maps the devices to their active shipments. Each shipment's
    group gets its courier's position; the dashboard gets every device's in
    one message.
    """
    latest = COALESCER.take()
    if not latest:
        return 0
    shipments: dict[int, list[int]] = {}
    for shipment_id, device_id in Shipment.objects.filter(
        device_id__in=list(latest),
        status__in=[ShipmentStatus.ASSIGNED, ShipmentStatus.IN_TRANSIT],
    ).values_list("pk", "device_id"):
        shipments.setdefault(device_id, []).append(shipment_id)
    dashboard = []
    for device_id, position in latest.items():
        entry = {
            "device_id": device_id,
            "shipment_id": None,
            "latitude": position.latitude,
            "longitude": position.longitude,
            "timestamp": position.recorded_at.isoformat(),
        }
        for shipment_id in shipments.get(device_id, ()):
            message = {"type": "position", **entry, "shipment_id": shipment_id}
            publish_text(groups.shipment(shipment_id), dumps(message))
            entry = {**entry, "shipment_id": shipment_id}
        dashboard.append(entry)
    publish_text(groups.DASHBOARD, dumps({"type": "positions", "positions": dashboard}))
    return len(latest)
