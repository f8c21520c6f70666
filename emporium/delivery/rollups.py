"""Per-minute rollups of a device's points, computed from each accepted batch.

Pure functions: storage adds the deltas computed here to the stored minutes in
the same transaction as the points (``storage.minutes_add``).

Distance is the sum of great-circle (haversine) lengths between consecutive
points in time order, over all the points stored. Each segment counts towards
the minute of its later point. A batch's points are merged with the stored
points around them, so a batch continues from the point before it and a point
that arrives late, between two stored ones, replaces their segment by the two
through it: the rollup equals a computation over all stored points whatever
the order of arrival.
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


def minute_deltas(*, fixes: Iterable[Fix], stored: Iterable[Fix]) -> list[MinuteDelta]:
    """What a batch of newly stored points adds to each minute, in minute order.

    ``fixes`` are the points actually inserted (never duplicates); ``stored``
    are the device's points stored before them from the first new point to the
    last, plus the one just before and the one just after (PostgreSQL does the
    same in SQL, see ``storage``). Distance stays the length of the path
    through all stored points in time order, whatever order they arrived in:
    every segment that touches a new point is added to the minute of its later
    point, and every stored segment a new point now splits is taken away from
    the minute that counted it. A minute whose distance alone changes gets a
    delta with no points, whose first and last time are one of its own.
    """
    new = [(fix, True) for fix in fixes]
    merged = sorted(new + [(fix, False) for fix in stored], key=lambda item: item[0].recorded_at)
    deltas: dict[datetime, MinuteDelta] = {}

    def delta_for(fix: Fix) -> MinuteDelta:
        minute = minute_of(fix.recorded_at)
        delta = deltas.get(minute)
        if delta is None:
            delta = deltas[minute] = MinuteDelta(
                minute=minute,
                point_count=0,
                latitude_sum=0.0,
                longitude_sum=0.0,
                first_recorded_at=fix.recorded_at,
                last_recorded_at=fix.recorded_at,
                distance_m=0.0,
                max_speed=None,
            )
        return delta

    previous: tuple[Fix, bool] | None = None
    previous_stored: Fix | None = None
    for fix, is_new in merged:
        delta = delta_for(fix)
        if previous is not None and (is_new or previous[1]):
            start = previous[0]
            delta.distance_m += haversine_m(
                start.latitude, start.longitude, fix.latitude, fix.longitude
            )
        if is_new:
            if delta.point_count == 0:
                delta.first_recorded_at = delta.last_recorded_at = fix.recorded_at
            delta.point_count += 1
            delta.latitude_sum += fix.latitude
            delta.longitude_sum += fix.longitude
            delta.first_recorded_at = min(delta.first_recorded_at, fix.recorded_at)
            delta.last_recorded_at = max(delta.last_recorded_at, fix.recorded_at)
            if fix.speed is not None and (delta.max_speed is None or fix.speed > delta.max_speed):
                delta.max_speed = fix.speed
        else:
            if previous_stored is not None and previous is not None and previous[1]:
                delta.distance_m -= haversine_m(
                    previous_stored.latitude,
                    previous_stored.longitude,
                    fix.latitude,
                    fix.longitude,
                )
            previous_stored = fix
        previous = (fix, is_new)
    # Stored points with no segment change need no delta.
    return [
        delta
        for delta in sorted(deltas.values(), key=lambda delta: delta.minute)
        if delta.point_count or delta.distance_m
    ]
