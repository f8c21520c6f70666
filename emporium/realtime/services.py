"""Writes of the real-time streams, and publishing them once the transaction commits.

Order events are rows first (their ids order the stream
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
from typing import Any, Protocol

from django.conf import settings
from django.db import connection, transaction

from emporium.realtime import groups, providers
from emporium.realtime.models import OrderEvent
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
#
# The orders app calls these with its own objects; realtime only needs the
# attributes named by these protocols, so it never imports orders.


class PlacedOrder(Protocol):
    """What the stream needs of a just-placed order."""

    @property
    def pk(self) -> Any: ...

    @property
    def user_id(self) -> int: ...

    @property
    def order_status(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


class StatusChange(Protocol):
    """What the stream needs of a recorded status change of an order."""

    @property
    def order_id(self) -> int: ...

    @property
    def from_status(self) -> str: ...

    @property
    def to_status(self) -> str: ...

    @property
    def reason(self) -> str: ...


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


def order_change_publish(*, change: StatusChange, user_id: int) -> None:
    """Announces a recorded status change to the order's owner after commit.

    Called inside the transaction that wrote ``change``: one ``OrderEvent``
    row. The notifications the customer gets follow from the change's domain
    event (emporium.notifications.triggers).
    """
    _order_event_record(
        user_id=user_id,
        order_id=change.order_id,
        from_status=change.from_status,
        to_status=change.to_status,
        reason=change.reason,
    )


def order_placed_record(*, order: PlacedOrder) -> OrderEvent:
    """Records the placement of ``order`` as the first event of its owner's stream.

    One INSERT in the checkout's transaction; the push follows the commit.
    """
    return _order_event_record(
        user_id=order.user_id, order_id=order.pk, from_status="", to_status=order.order_status
    )


def order_placed_announce(*, order: PlacedOrder, event_id: int) -> None:
    """Publishes a placement whose ``OrderEvent`` row was written in SQL (row ``event_id``).

    PostgreSQL's checkout statement (orders/sql/order_place.sql) writes the row itself.
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


class PositionFix(Protocol):
    """What the position stream needs of a stored telemetry point."""

    @property
    def latitude(self) -> float: ...

    @property
    def longitude(self) -> float: ...

    @property
    def recorded_at(self) -> datetime: ...


def positions_note(*, device_id: int, points: Sequence[PositionFix]) -> None:
    """Remembers the newest of ``points`` (just stored) once the transaction commits."""
    if not points:
        return
    newest = max(points, key=attrgetter("recorded_at"))
    position = _Position(newest.latitude, newest.longitude, newest.recorded_at)
    transaction.on_commit(lambda: COALESCER.note(device_id, position))


def positions_flush() -> int:
    """Publishes the positions noted since the last flush; returns how many devices moved.

    The delivery app maps the devices to their active shipments (one query,
    registered in :mod:`~emporium.realtime.providers`). Each shipment's group
    gets its courier's position; the dashboard gets every device's in one
    message.
    """
    latest = COALESCER.take()
    if not latest:
        return 0
    shipments = providers.position_routes(latest)
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
