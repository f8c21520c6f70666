"""Reads of the delivery domain: shipments a user may see, summaries, positions.

Summaries are built from the minute rollups only, never from raw points, so
their cost depends on the number of minutes asked for, not on how many points
the devices sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import BigIntegerField, Func, Max, Min, QuerySet, Sum
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from emporium.accounts.models import User
from emporium.delivery.models import (
    DevicePosition,
    Shipment,
    ShipmentStatus,
    TelemetryMinute,
    TelemetryPoint,
)
from emporium.delivery.rollups import minute_of

WINDOWS: dict[str, int] = {"1m": 60, "15m": 15 * 60, "1h": 3600, "1d": 86400}
MAX_SUMMARY_WINDOWS = 2880  # two days of minutes, or eight years of days
TRACK_RECENT_WINDOW = "1m"
TRACK_RECENT_SPAN = timedelta(minutes=30)


def shipment_list_for_user(*, user: User) -> QuerySet[Shipment]:
    """Shipments a user may see: of their own orders, or all with ``delivery.view_shipment``."""
    queryset = Shipment.objects.all()
    if not user.has_perm("delivery.view_shipment"):
        queryset = queryset.filter(order__user=user)
    return queryset.select_related("order").order_by("-created_at", "-id")


class _EpochWindowStart(Func):
    """The start of the window a timestamp falls in, as seconds since the epoch (UTC)."""

    output_field = BigIntegerField()

    def __init__(self, expression: str, *, seconds: int) -> None:
        super().__init__(expression)
        self.seconds = int(seconds)

    def as_postgresql(
        self, compiler: SQLCompiler, connection: Any, **extra_context: Any
    ) -> tuple[str, Any]:
        sql, params = compiler.compile(self.source_expressions[0])
        return (
            f"(floor(extract(epoch from {sql}) / {self.seconds}) * {self.seconds})::bigint",
            list(params),
        )

    def as_sqlite(
        self, compiler: SQLCompiler, connection: Any, **extra_context: Any
    ) -> tuple[str, Any]:
        sql, params = compiler.compile(self.source_expressions[0])
        return (
            f"((CAST(strftime('%%s', {sql}) AS INTEGER) / {self.seconds}) * {self.seconds})",
            list(params),
        )


@dataclass(frozen=True)
class WindowSummary:
    start: datetime
    end: datetime
    count: int
    latitude: float
    longitude: float
    first_seen: datetime
    last_seen: datetime
    distance_m: float
    max_speed: float | None


def telemetry_summary(
    *, device_id: int, start: datetime, end: datetime, window: str
) -> list[WindowSummary]:
    """Per-window averages and totals of one device, for the minutes in [start, end).

    Windows are aligned to multiples of their length since the Unix epoch
    (UTC): 15-minute windows start at :00, :15, :30 and :45. A minute counts
    when it starts at or after ``start`` rounded down to the minute and before
    ``end``, so the first and last windows may cover part of their span only.
    """
    seconds = WINDOWS[window]
    rows = (
        TelemetryMinute.objects.filter(
            device_id=device_id, minute__gte=minute_of(start), minute__lt=end
        )
        .annotate(window_start=_EpochWindowStart("minute", seconds=seconds))
        .values("window_start")
        .annotate(
            count=Sum("point_count"),
            latitude_sum=Sum("latitude_sum"),
            longitude_sum=Sum("longitude_sum"),
            first_seen=Min("first_recorded_at"),
            last_seen=Max("last_recorded_at"),
            distance_m=Sum("distance_m"),
            max_speed=Max("max_speed"),
        )
        .order_by("window_start")
    )
    summaries = []
    for row in rows:
        window_start = datetime.fromtimestamp(row["window_start"], tz=UTC)
        summaries.append(
            WindowSummary(
                start=window_start,
                end=window_start + timedelta(seconds=seconds),
                count=row["count"],
                latitude=row["latitude_sum"] / row["count"],
                longitude=row["longitude_sum"] / row["count"],
                first_seen=row["first_seen"],
                last_seen=row["last_seen"],
                distance_m=row["distance_m"],
                max_speed=row["max_speed"],
            )
        )
    return summaries


def summary_window_count(*, start: datetime, end: datetime, window: str) -> int:
    """How many windows a summary over [start, end) can return at most."""
    seconds = WINDOWS[window]
    first = int(minute_of(start).timestamp()) // seconds
    last = int((end - timedelta(microseconds=1)).timestamp()) // seconds
    return max(0, last - first + 1)


@dataclass(frozen=True)
class Position:
    device_id: int
    recorded_at: datetime
    latitude: float
    longitude: float
    speed: float | None
    heading: float | None
    accuracy: float | None


def device_position_latest(*, device_id: int) -> Position | None:
    """The newest point a device has sent, read from its position row (no raw scan)."""
    row = DevicePosition.objects.filter(device_id=device_id, recorded_at__isnull=False).first()
    if row is None or row.recorded_at is None or row.latitude is None or row.longitude is None:
        return None
    return _position_of(device_id, row)


def _position_of(device_id: int, row: DevicePosition | TelemetryPoint) -> Position:
    return Position(
        device_id=device_id,
        recorded_at=row.recorded_at,  # type: ignore[arg-type]  # callers checked it is set
        latitude=row.latitude,  # type: ignore[arg-type]
        longitude=row.longitude,  # type: ignore[arg-type]
        speed=row.speed,
        heading=row.heading,
        accuracy=row.accuracy,
    )


@dataclass(frozen=True)
class ShipmentTrack:
    shipment: Shipment
    position: Position | None
    recent_start: datetime
    recent_end: datetime
    recent: list[WindowSummary]


def shipment_track(*, shipment: Shipment, now: datetime | None = None) -> ShipmentTrack:
    """Where the courier of a shipment is, and the last half hour of their route.

    Only positions from the shipment's creation until its delivery are shown:
    a customer follows the courier while carrying their parcel, not before or
    after.
    """
    now = now or timezone.now()
    tracked_from = shipment.created_at
    delivered = shipment.status == ShipmentStatus.DELIVERED and shipment.delivered_at is not None
    tracked_until = shipment.delivered_at if delivered and shipment.delivered_at else None
    position = device_position_latest(device_id=shipment.device_id)
    if position is not None and (
        position.recorded_at < tracked_from
        or (tracked_until is not None and position.recorded_at > tracked_until)
    ):
        position = None
        if tracked_until is not None:
            position = _position_at_or_before(
                device_id=shipment.device_id, start=tracked_from, end=tracked_until
            )
    recent_end = tracked_until or now
    recent_start = max(tracked_from, recent_end - TRACK_RECENT_SPAN)
    recent = (
        telemetry_summary(
            device_id=shipment.device_id,
            start=recent_start,
            end=recent_end,
            window=TRACK_RECENT_WINDOW,
        )
        if recent_start < recent_end
        else []
    )
    return ShipmentTrack(
        shipment=shipment,
        position=position,
        recent_start=recent_start,
        recent_end=recent_end,
        recent=recent,
    )


def _position_at_or_before(*, device_id: int, start: datetime, end: datetime) -> Position | None:
    """The last raw point in [start, end]: one index probe per daily partition touched."""
    point = (
        TelemetryPoint.objects.filter(
            device_id=device_id, recorded_at__gte=start, recorded_at__lte=end
        )
        .order_by("-recorded_at")
        .first()
    )
    if point is None:
        return None
    return _position_of(device_id, point)
