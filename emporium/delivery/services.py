"""Writes of the delivery domain: devices and their tokens, shipments, telemetry batches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from emporium.accounts.models import User
from emporium.core.errors import Conflict
from emporium.delivery.auth import device_token_generate, device_token_hash
from emporium.delivery.hooks import points_stored_announce
from emporium.delivery.models import CourierDevice, Shipment, ShipmentStatus
from emporium.delivery.storage.ingestion import telemetry_points_store
from emporium.delivery.validation import (
    Rejection,
    batch_clean,
    batch_decode,
    point_batch_of,
    points_validate,
)
from emporium.observability import domain_metrics
from emporium.orders.locks import order_lock
from emporium.orders.models import Order, OrderStatus
from emporium.orders.services import order_transition
from emporium.realtime import services as realtime_services


class DeviceRevoked(Conflict):
    code = "device_revoked"
    default_message = "This device has been revoked."


class OrderNotShippable(Conflict):
    code = "order_not_shippable"
    default_message = "Only a paid or shipped order can be given a shipment."


class ShipmentExists(Conflict):
    code = "shipment_exists"
    default_message = "This order already has a shipment."


class IllegalShipmentTransition(Conflict):
    code = "illegal_transition"


# -- devices ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedDevice:
    device: CourierDevice
    token: str  # shown once; only its hash is stored


def device_issue(*, name: str, metadata: dict[str, object] | None = None) -> IssuedDevice:
    token = device_token_generate()
    device = CourierDevice.objects.create(
        name=name, token_hash=device_token_hash(token), metadata=metadata
    )
    return IssuedDevice(device=device, token=token)


def device_token_rotate(*, device: CourierDevice) -> IssuedDevice:
    """Gives an active device a new token; the old one stops working at once."""
    token = device_token_generate()
    updated = CourierDevice.objects.filter(pk=device.pk, is_active=True).update(
        token_hash=device_token_hash(token), updated_at=timezone.now()
    )
    if not updated:
        raise DeviceRevoked()
    device.refresh_from_db()
    return IssuedDevice(device=device, token=token)


def device_revoke(*, device: CourierDevice) -> CourierDevice:
    """Revokes the device's token for good. Revoking twice keeps the first time."""
    now = timezone.now()
    CourierDevice.objects.filter(pk=device.pk, is_active=True).update(
        is_active=False, revoked_at=now, updated_at=now
    )
    device.refresh_from_db()
    return device


# -- shipments -------------------------------------------------------------------------


def shipment_create(*, order: Order, device: CourierDevice, actor: User | None = None) -> Shipment:
    """Hands an order to a courier's device, marking a paid order shipped on the way.

    One transaction: the order row is locked (by the transition, or directly
    when it is already shipped), so two staff members cannot both create one;
    the unique constraint is the backstop.
    """
    with transaction.atomic():
        locked = order_lock(order_id=order.pk)
        if locked.order_status == OrderStatus.PAID:
            order_transition(
                order_id=order.pk, to_status=OrderStatus.SHIPPED, actor=actor, reason="shipment"
            )
        elif locked.order_status != OrderStatus.SHIPPED:
            raise OrderNotShippable(
                details={"order": order.pk, "order_status": locked.order_status}
            )
        if not CourierDevice.objects.filter(pk=device.pk, is_active=True).exists():
            raise DeviceRevoked(details={"device": device.pk})
        if Shipment.objects.filter(order_id=order.pk).exists():
            raise ShipmentExists(details={"order": order.pk})
        return Shipment.objects.create(
            order_id=order.pk, device=device, status=ShipmentStatus.ASSIGNED, created_by=actor
        )


def shipment_start(*, shipment: Shipment) -> Shipment:
    """The courier has picked the parcel up: assigned -> in transit."""
    now = timezone.now()
    moved = Shipment.objects.filter(pk=shipment.pk, status=ShipmentStatus.ASSIGNED).update(
        status=ShipmentStatus.IN_TRANSIT, in_transit_at=now, updated_at=now
    )
    if not moved:
        shipment.refresh_from_db()
        raise IllegalShipmentTransition(
            f"A shipment that is {shipment.status} cannot become in_transit.",
            details={"from": shipment.status, "to": ShipmentStatus.IN_TRANSIT},
        )
    shipment.refresh_from_db()
    return shipment


def shipment_deliver(*, shipment: Shipment, actor: User | None = None) -> Shipment:
    """Delivered (from assigned or in transit); a shipped order becomes delivered with it."""
    now = timezone.now()
    with transaction.atomic():
        moved = Shipment.objects.filter(
            pk=shipment.pk, status__in=[ShipmentStatus.ASSIGNED, ShipmentStatus.IN_TRANSIT]
        ).update(status=ShipmentStatus.DELIVERED, delivered_at=now, updated_at=now)
        if not moved:
            shipment.refresh_from_db()
            raise IllegalShipmentTransition(
                f"A shipment that is {shipment.status} cannot become delivered.",
                details={"from": shipment.status, "to": ShipmentStatus.DELIVERED},
            )
        if Order.objects.filter(pk=shipment.order_id, order_status=OrderStatus.SHIPPED).exists():
            order_transition(
                order_id=shipment.order_id,
                to_status=OrderStatus.DELIVERED,
                actor=actor,
                reason="shipment delivered",
            )
    shipment.refresh_from_db()
    return shipment


# -- telemetry -------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    rejected: list[Rejection]


def telemetry_batch_ingest(
    *, device: CourierDevice, body: bytes, media_type: str, now: datetime | None = None
) -> IngestResult:
    """Validates a batch from ``device`` and stores its new points.

    Valid points are stored even when others are rejected. A point whose
    device and timestamp are already stored, or appear earlier in the same
    batch, counts as a duplicate and changes nothing: a batch sent twice is
    stored once.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    max_future = timedelta(seconds=settings.EMPORIUM_TELEMETRY_MAX_FUTURE_SECONDS)
    retention = timedelta(days=settings.EMPORIUM_TELEMETRY_RETENTION_DAYS)
    max_points = settings.EMPORIUM_TELEMETRY_MAX_POINTS
    # The usual batch is entirely valid and is checked as a whole; any other
    # goes point by point, so each rejected point is named with its reason.
    batch = batch_clean(
        body=body,
        media_type=media_type,
        device_id=device.pk,
        now=now,
        max_future=max_future,
        retention=retention,
        max_points=max_points,
    )
    rejected: list[Rejection] = []
    if batch is None:
        decoded, undecodable = batch_decode(body=body, media_type=media_type, max_points=max_points)
        valid, invalid = points_validate(
            points=decoded,
            device_id=device.pk,
            now=now,
            max_future=max_future,
            retention=retention,
        )
        batch = point_batch_of(valid)
        rejected = sorted(undecodable + invalid, key=lambda rejection: rejection.index)
    accepted = telemetry_points_store(device_id=device.pk, batch=batch)
    if accepted:
        # Only the newest point matters to the realtime hook; one object, not one per point.
        realtime_services.positions_note(device_id=device.pk, points=[batch.newest()])
    points_stored_announce(count=accepted)  # the dashboard's points/s (in memory, no I/O)
    result = IngestResult(accepted=accepted, duplicates=batch.valid - accepted, rejected=rejected)
    _ingest_count(result, seconds=time.perf_counter() - started)
    return result


# One child per result, looked up once: the ingest path adds three numbers per batch.
_POINTS_ACCEPTED = domain_metrics.TELEMETRY_POINTS.labels("accepted")
_POINTS_DUPLICATE = domain_metrics.TELEMETRY_POINTS.labels("duplicate")
_POINTS_REJECTED = domain_metrics.TELEMETRY_POINTS.labels("rejected")


def _ingest_count(result: IngestResult, *, seconds: float) -> None:
    if result.accepted:
        _POINTS_ACCEPTED.inc(result.accepted)
    if result.duplicates:
        _POINTS_DUPLICATE.inc(result.duplicates)
    if result.rejected:
        _POINTS_REJECTED.inc(len(result.rejected))
    domain_metrics.TELEMETRY_INGEST_DURATION.observe(seconds)
