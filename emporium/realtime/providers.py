"""What domain apps plug into realtime, so realtime never imports them.

Realtime sits below the domain apps: orders and delivery call its services,
so it cannot import them back. Where a stream needs a domain's answer, the
app that owns the answer registers a function here from its
``AppConfig.ready()``:

* delivery: who may watch a shipment (:func:`shipment_access_register`) and
  which active shipments a courier device's position belongs to
  (:func:`position_routes_register`);
* dashboard: the permission that opens the dashboard stream
  (:func:`stream_permission_register`).

Until something is registered the answers are the safe ones: no shipment is
visible, positions reach only the dashboard, the stream opens for nobody.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

from emporium.accounts.models import User


class Visibility(enum.Enum):
    WATCH = "watch"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"  # told only to those who may watch every shipment


ShipmentAccess = Callable[[User, int], Visibility]
PositionRoutes = Callable[[list[int]], dict[int, list[int]]]

_shipment_access: list[ShipmentAccess] = []
_position_routes: list[PositionRoutes] = []
_stream_permissions: dict[str, str] = {}


def shipment_access_register(access: ShipmentAccess) -> None:
    """``access(user, shipment_id)`` decides what a shipment socket may see; one per process."""
    _shipment_access[:] = [access]


def shipment_visibility(*, user: User, shipment_id: int) -> Visibility:
    if not _shipment_access:
        return Visibility.FORBIDDEN
    return _shipment_access[0](user, shipment_id)


def position_routes_register(routes: PositionRoutes) -> None:
    """``routes(device_ids)`` maps devices to the ids of their active shipments."""
    _position_routes[:] = [routes]


def position_routes(device_ids: Iterable[int]) -> dict[int, list[int]]:
    if not _position_routes:
        return {}
    return _position_routes[0](list(device_ids))


def stream_permission_register(*, stream: str, permission: str) -> None:
    """The ``app_label.codename`` permission a user needs to open ``stream``."""
    _stream_permissions[stream] = permission


def stream_permission(stream: str) -> str | None:
    return _stream_permissions.get(stream)
