"""The telemetry tables, and the minute rollup's SQL rendered from its one declaration.

``rollups.MINUTE_FIELDS`` says how each minute column gathers its points; the
aggregate list of PostgreSQL's ingestion statement and the upsert that adds a
delta to a stored minute (PostgreSQL and SQLite alike) are written from it here.
"""

from __future__ import annotations

from emporium.delivery.models import DevicePosition, TelemetryMinute
from emporium.delivery.rollups import DISTANCE_FIELD, MINUTE_FIELDS, Fold

POINT_TABLE = "delivery_telemetry_point"
MINUTE_TABLE = TelemetryMinute._meta.db_table
POSITION_TABLE = DevicePosition._meta.db_table
POINT_COLUMNS = "device_id, recorded_at, latitude, longitude, speed, heading, accuracy"

# The columns a minute row is written with, in order.
MINUTE_COLUMNS: tuple[str, ...] = (
    "device_id",
    "minute",
    *(field.name for field in MINUTE_FIELDS),
    DISTANCE_FIELD,
)

_AGGREGATES = {Fold.COUNT: "count", Fold.SUM: "sum", Fold.MIN: "min", Fold.MAX: "max"}


def minute_aggregates_sql() -> str:
    """The fields as aggregates over a minute's points, in ``MINUTE_FIELDS`` order."""
    return ", ".join(
        f"{_AGGREGATES[field.fold]}({field.source or '*'}) AS {field.name}"
        for field in MINUTE_FIELDS
    )


def _merged(name: str, fold: Fold) -> str:
    stored, added = f"{MINUTE_TABLE}.{name}", f"excluded.{name}"
    if fold in (Fold.COUNT, Fold.SUM):
        return f"{stored} + {added}"
    # least()/greatest() that skip NULL, in SQL both databases run.
    comparison = "<" if fold is Fold.MIN else ">"
    return (
        f"CASE WHEN {stored} IS NULL OR {added} {comparison} {stored} "
        f"THEN {added} ELSE {stored} END"
    )


# The clause names only the declared minute columns; every value is a bound parameter
# of the INSERT it ends.
_UPSERT_HEAD = "ON CONFLICT (device_id, minute) DO UPDATE SET "


def minute_upsert_sql() -> str:
    """``ON CONFLICT`` clause adding an inserted minute row to the stored one.

    Additive, so two batches of a device committed in either order give the
    same minute.
    """
    assignments = [f"{field.name} = {_merged(field.name, field.fold)}" for field in MINUTE_FIELDS]
    assignments.append(f"{DISTANCE_FIELD} = {_merged(DISTANCE_FIELD, Fold.SUM)}")
    return _UPSERT_HEAD + ", ".join(assignments)
