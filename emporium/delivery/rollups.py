"""Per-minute rollups of a device's points, computed from each accepted batch.

What a minute holds is declared once, in :data:`MINUTE_FIELDS`: each field is
a fold of one attribute of the minute's points (a count, a sum, a least or a
greatest value). :func:`minute_deltas` folds a batch with it in Python (the
embedded profile); ``emporium.delivery.storage.tables`` renders the same
declaration as the SQL aggregates of PostgreSQL's ingestion statement and as
the upsert that adds a delta to a stored minute on both databases. A new
field is one line here, a model field and its migration.

Distance is the sum of great-circle (haversine) lengths between consecutive
points in time order, over all the points stored. Each segment counts towards
the minute of its later point. A batch's points are merged with the stored
points around them, so a batch continues from the point before it and a point
that arrives late, between two stored ones, replaces their segment by the two
through it: the rollup equals a computation over all stored points whatever
the order of arrival.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)


@dataclass(frozen=True, slots=True)
class Fix:
    """A position at an instant: what the rollup needs of a point."""

    recorded_at: datetime
    latitude: float
    longitude: float
    speed: float | None = None


class Fold(enum.Enum):
    """How a minute field gathers its points, and how a delta joins a stored minute."""

    COUNT = "count"  # how many points; deltas add up
    SUM = "sum"  # deltas add up
    MIN = "min"  # the least non-null value; NULL when there is none
    MAX = "max"  # the greatest non-null value; NULL when there is none


@dataclass(frozen=True, slots=True)
class MinuteField:
    """A column of the minute rollup (and attribute of :class:`MinuteDelta`)."""

    name: str
    fold: Fold
    source: str | None = None  # the point's attribute; None for COUNT


# The minute's figures from its points. Distance is not among them: it is a
# property of consecutive points, not of each point (see minute_deltas).
MINUTE_FIELDS: tuple[MinuteField, ...] = (
    MinuteField("point_count", Fold.COUNT),
    MinuteField("latitude_sum", Fold.SUM, "latitude"),
    MinuteField("longitude_sum", Fold.SUM, "longitude"),
    MinuteField("first_recorded_at", Fold.MIN, "recorded_at"),
    MinuteField("last_recorded_at", Fold.MAX, "recorded_at"),
    MinuteField("max_speed", Fold.MAX, "speed"),
)
DISTANCE_FIELD = "distance_m"


@dataclass(slots=True)
class MinuteDelta:
    """What a batch adds to one minute: the :data:`MINUTE_FIELDS` and the distance.

    A delta with no new point (its distance alone changes) has no first or
    last time.
    """

    minute: datetime
    point_count: int = 0
    latitude_sum: float = 0.0
    longitude_sum: float = 0.0
    first_recorded_at: datetime | None = None
    last_recorded_at: datetime | None = None
    max_speed: float | None = None
    distance_m: float = 0.0

    def add(self, fix: Fix) -> None:
        """Folds a new point into the delta, field by field, as :data:`MINUTE_FIELDS` says."""
        for field in MINUTE_FIELDS:
            current = getattr(self, field.name)
            value = None if field.source is None else getattr(fix, field.source)
            setattr(self, field.name, _folded(field.fold, current, value))


def _folded(fold: Fold, current: Any, value: Any) -> Any:
    if fold is Fold.COUNT:
        return current + 1
    if value is None:
        return current
    if fold is Fold.SUM:
        return current + value
    if current is None:
        return value
    if fold is Fold.MIN:
        return min(current, value)
    return max(current, value)


def haversine_m(
    latitude_a: float, longitude_a: float, latitude_b: float, longitude_b: float
) -> float:
    phi_a = math.radians(latitude_a)
    phi_b = math.radians(latitude_b)
    half_dphi = (phi_b - phi_a) / 2
    half_dlambda = math.radians(longitude_b - longitude_a) / 2
    h = math.sin(half_dphi) ** 2 + math.cos(phi_a) * math.cos(phi_b) * math.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def haversine_sql(latitude_a: str, longitude_a: str, latitude_b: str, longitude_b: str) -> str:
    """:func:`haversine_m` as a PostgreSQL expression over the four named columns."""
    return (
        f"(2 * {EARTH_RADIUS_M} * asin(least(1.0, sqrt("
        f"power(sin((radians({latitude_b}) - radians({latitude_a})) / 2), 2) "
        f"+ cos(radians({latitude_a})) * cos(radians({latitude_b})) "
        f"* power(sin(radians({longitude_b} - {longitude_a}) / 2), 2)))))"
    )


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def minute_deltas(*, fixes: Iterable[Fix], stored: Iterable[Fix]) -> list[MinuteDelta]:
    """What a batch of newly stored points adds to each minute, in minute order.

    ``fixes`` are the points actually inserted (never duplicates); ``stored``
    are the device's points stored before them from the first new point to the
    last, plus the one just before and the one just after (PostgreSQL does the
    same in SQL, see ``storage.postgresql``). Distance stays the length of the path
    through all stored points in time order, whatever order they arrived in:
    every segment that touches a new point is added to the minute of its later
    point, and every stored segment a new point now splits is taken away from
    the minute that counted it. A minute whose distance alone changes gets a
    delta with no points.
    """
    new = [(fix, True) for fix in fixes]
    merged = sorted(new + [(fix, False) for fix in stored], key=lambda item: item[0].recorded_at)
    deltas: dict[datetime, MinuteDelta] = {}

    def delta_for(fix: Fix) -> MinuteDelta:
        minute = minute_of(fix.recorded_at)
        delta = deltas.get(minute)
        if delta is None:
            delta = deltas[minute] = MinuteDelta(minute=minute)
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
            delta.add(fix)
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
