"""Per-minute rollups of a device's points, computed from each accepted batch.

Pure functions: storage adds the deltas computed here to the stored minutes in
the same transaction as the points (``storage.minutes_add``).

Distance is the sum of great-circle (haversine) lengths between consecutive
points in time order. Each segment counts towards the minute of its later
point. The first point of a batch continues from the device's last known
position when that position is older; a point that arrives later than a newer
one (out of order) starts a segment from the batch's own previous point or the
last known position, whichever is closer in time before it. A device that
sends in time order, as devices do, gets the exact path length; a late point
only adds the segments it can see.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)


@dataclass(frozen=True, slots=True)
class Fix:
    """A position at an instant: what the rollup needs of a point."""

    recorded_at: datetime
    latitude: float
    longitude: float
    speed: float | None = None


@dataclass(slots=True)
class MinuteDelta:
    minute: datetime
    point_count: int
    latitude_sum: float
    longitude_sum: float
    first_recorded_at: datetime
    last_recorded_at: datetime
    distance_m: float
    max_speed: float | None


def haversine_m(
    latitude_a: float, longitude_a: float, latitude_b: float, longitude_b: float
) -> float:
    phi_a = math.radians(latitude_a)
    phi_b = math.radians(latitude_b)
    half_dphi = (phi_b - phi_a) / 2
    half_dlambda = math.radians(longitude_b - longitude_a) / 2
    h = math.sin(half_dphi) ** 2 + math.cos(phi_a) * math.cos(phi_b) * math.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def minute_deltas(*, fixes: Iterable[Fix], anchor: Fix | None) -> list[MinuteDelta]:
    """What a batch of newly stored points adds to each minute, in minute order.

    ``fixes`` are the points actually inserted (never duplicates); ``anchor``
    is the device's newest point before this batch, if any.
    """
    ordered = sorted(fixes, key=lambda fix: fix.recorded_at)
    deltas: dict[datetime, MinuteDelta] = {}
    previous: Fix | None = None
    for fix in ordered:
        # The segment into this point starts at the nearest earlier point known:
        # the batch's previous point, or the stored anchor if it lies in between.
        start = previous
        if (
            anchor is not None
            and anchor.recorded_at < fix.recorded_at
            and (start is None or start.recorded_at < anchor.recorded_at)
        ):
            start = anchor
        segment = (
            haversine_m(start.latitude, start.longitude, fix.latitude, fix.longitude)
            if start is not None
            else 0.0
        )
        minute = minute_of(fix.recorded_at)
        delta = deltas.get(minute)
        if delta is None:
            deltas[minute] = MinuteDelta(
                minute=minute,
                point_count=1,
                latitude_sum=fix.latitude,
                longitude_sum=fix.longitude,
                first_recorded_at=fix.recorded_at,
                last_recorded_at=fix.recorded_at,
                distance_m=segment,
                max_speed=fix.speed,
            )
        else:
            delta.point_count += 1
            delta.latitude_sum += fix.latitude
            delta.longitude_sum += fix.longitude
            delta.last_recorded_at = fix.recorded_at  # points come in time order
            delta.distance_m += segment
            if fix.speed is not None and (delta.max_speed is None or fix.speed > delta.max_speed):
                delta.max_speed = fix.speed
        previous = fix
    return list(deltas.values())
