"""Delivery's answers to the realtime streams, registered with realtime at startup.

Realtime sits below delivery and never imports it; :func:`streams_register`
(run by the app's ``ready()``) hands it who may watch a shipment's live
position and which active shipments a courier device's position belongs to.
"""

from __future__ import annotations

from emporium.accounts.models import User
from emporium.delivery.models import Shipment, ShipmentStatus
from emporium.realtime import providers

# An account with this permission may watch any shipment.
VIEW_ANY_SHIPMENT = "delivery.view_shipment"


def shipment_visibility(user: User, shipment_id: int) -> providers.Visibility:
    """A customer may watch the shipment of their own order; ``delivery.view_shipment``
    holders any shipment, and only they learn that a shipment does not exist."""
    owner_id = (
        Shipment.objects.filter(pk=shipment_id).values_list("order__user_id", flat=True).first()
    )
    if owner_id is not None and owner_id == user.pk:
        return providers.Visibility.WATCH
    if not user.has_perm(VIEW_ANY_SHIPMENT):
        return providers.Visibility.FORBIDDEN
    return providers.Visibility.WATCH if owner_id is not None else providers.Visibility.NOT_FOUND


def active_shipments_by_device(device_ids: list[int]) -> dict[int, list[int]]:
    """The assigned or in-transit shipments of each device, in one query."""
    shipments: dict[int, list[int]] = {}
    for shipment_id, device_id in Shipment.objects.filter(
        device_id__in=device_ids,
        status__in=[ShipmentStatus.ASSIGNED, ShipmentStatus.IN_TRANSIT],
    ).values_list("pk", "device_id"):
        shipments.setdefault(device_id, []).append(shipment_id)
    return shipments


def streams_register() -> None:
    providers.shipment_access_register(shipment_visibility)
    providers.position_routes_register(active_shipments_by_device)
