"""Decoding and checking a telemetry batch, fast: msgspec, no DRF serializers.

A batch is a JSON array or NDJSON (one point per line). The whole array is
decoded in one call when every element is well formed, which is the usual
case; otherwise each element is decoded on its own so one bad point is
rejected with its index and the others are kept. Checks that msgspec cannot
express with a clear reason (ranges, time window, ownership) run after.

Most batches are entirely valid, so ``batch_clean`` tries that first: the
array is decoded with the ranges as msgspec constraints, and ownership and the
time window are checked on the whole batch at once (all device ids equal, the
oldest and newest timestamps inside the window). Only when that fails does the
batch go through the per-point path, which names each point's reason. Either
way the result is a ``PointBatch``: one list per column, which is what storage
sends to the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from emporium.core.errors import ApplicationError, InvalidInput
from emporium.core.parsers import json_depth_check

NDJSON_MEDIA_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})
JSON_MEDIA_TYPE = "application/json"

_BIGINT_MAX = 2**63 - 1


class PointIn(msgspec.Struct):
    """One point as a device sends it; unknown fields are ignored."""

    device_id: Annotated[int, msgspec.Meta(ge=1, le=_BIGINT_MAX)]
    timestamp: datetime
    latitude: float
    longitude: float
    speed: float | None = None  # metres per second
    heading: float | None = None  # degrees clockwise from north, [0, 360]
    accuracy: float | None = None  # metres


@dataclass(frozen=True, slots=True)
class ValidPoint:
    index: int
    recorded_at: datetime  # UTC
    latitude: float
    longitude: float
    speed: float | None
    heading: float | None
    accuracy: float | None


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: str
    message: str


class _CleanPointIn(msgspec.Struct):
    """``PointIn`` with its ranges as constraints: decoding fails if any point is out of range.

    JSON cannot carry NaN or infinity and msgspec refuses numbers that overflow
    a double, so every float that decodes is finite.
    """

    device_id: Annotated[int, msgspec.Meta(ge=1, le=_BIGINT_MAX)]
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    latitude: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    longitude: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
    speed: Annotated[float, msgspec.Meta(ge=0.0)] | None = None
    heading: Annotated[float, msgspec.Meta(ge=0.0, le=360.0)] | None = None
    accuracy: Annotated[float, msgspec.Meta(ge=0.0)] | None = None


# Binary PostgreSQL timestamps count microseconds from this instant.
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class PointBatch:
    """The valid points of one batch, one list per column, without repeated timestamps.

    ``micros`` is each timestamp as microseconds since 2000-01-01 UTC (how
    PostgreSQL stores it); ``valid`` counts the valid points before repeats
    inside the batch were dropped, so ``valid - accepted`` are the duplicates.
    """

    timestamps: list[datetime]  # as sent: aware, any UTC offset
    micros: list[int]
    latitude: list[float]
    longitude: list[float]
    speed: list[float | None]
    heading: list[float | None]
    accuracy: list[float | None]
    valid: int

    def __len__(self) -> int:
        return len(self.micros)

    def newest(self) -> ValidPoint:
        """The latest point, with its time in UTC."""
        index = max(range(len(self.micros)), key=self.micros.__getitem__)
        return ValidPoint(
            index=index,
            recorded_at=self.timestamps[index].astimezone(UTC),
            latitude=self.latitude[index],
            longitude=self.longitude[index],
            speed=self.speed[index],
            heading=self.heading[index],
            accuracy=self.accuracy[index],
        )

    def points(self) -> list[ValidPoint]:
        """One object per point (the embedded profile's storage works on these)."""
        return [
            ValidPoint(index, moment.astimezone(UTC), *values)
            for index, (moment, *values) in enumerate(
                zip(
                    self.timestamps,
                    self.latitude,
                    self.longitude,
                    self.speed,
                    self.heading,
                    self.accuracy,
                    strict=True,
                )
            )
        ]


def _micros(moment: datetime) -> int:
    return (moment - PG_EPOCH) // _MICROSECOND


def point_batch(
    *,
    timestamps: list[datetime],
    latitude: list[float],
    longitude: list[float],
    speed: list[float | None],
    heading: list[float | None],
    accuracy: list[float | None],
) -> PointBatch:
    """Columns of valid points -> a ``PointBatch``, keeping the first point of each timestamp."""
    micros = [_micros(moment) for moment in timestamps]
    valid = len(micros)
    if len(set(micros)) != valid:
        first: dict[int, int] = {}
        for index, moment in enumerate(micros):
            first.setdefault(moment, index)
        keep = list(first.values())  # in the order the points were sent
        micros = [micros[index] for index in keep]
        timestamps = [timestamps[index] for index in keep]
        latitude = [latitude[index] for index in keep]
        longitude = [longitude[index] for index in keep]
        speed = [speed[index] for index in keep]
        heading = [heading[index] for index in keep]
        accuracy = [accuracy[index] for index in keep]
    return PointBatch(timestamps, micros, latitude, longitude, speed, heading, accuracy, valid)


def point_batch_of(points: list[ValidPoint]) -> PointBatch:
    return point_batch(
        timestamps=[point.recorded_at for point in points],
        latitude=[point.latitude for point in points],
        longitude=[point.longitude for point in points],
        speed=[point.speed for point in points],
        heading=[point.heading for point in points],
        accuracy=[point.accuracy for point in points],
    )


_clean_points_decoder = msgspec.json.Decoder(list[_CleanPointIn])


def batch_clean(
    *,
    body: bytes,
    media_type: str,
    device_id: int,
    now: datetime,
    max_future: timedelta,
    retention: timedelta,
    max_points: int,
) -> PointBatch | None:
    """The batch's points if every one of them is valid, else None (use the per-point path).

    Gives the same answer as ``batch_decode`` followed by ``points_validate``
    for a batch with no rejection, without a Python loop over the points for
    the checks.
    """
    if media_type not in (JSON_MEDIA_TYPE, ""):
        return None
    json_depth_check(body)  # msgspec descends recursively and has no limit of its own
    try:
        points = _clean_points_decoder.decode(body)
    except msgspec.MsgspecError:
        return None
    if not points or len(points) > max_points:
        return None
    if any(point.device_id != device_id for point in points):
        return None
    timestamps = [point.timestamp for point in points]
    if max(timestamps) > now + max_future or min(timestamps) < now - retention:
        return None
    return point_batch(
        timestamps=timestamps,
        latitude=[point.latitude for point in points],
        longitude=[point.longitude for point in points],
        speed=[point.speed for point in points],
        heading=[point.heading for point in points],
        accuracy=[point.accuracy for point in points],
    )


class MalformedBatch(InvalidInput):
    code = "malformed_request"
    default_message = "The body must be a JSON array of points or NDJSON, one point per line."


class TooManyPoints(ApplicationError):
    status_code = 413
    code = "too_many_points"
    default_message = "The batch has more points than one request may carry."


class UnsupportedBatchType(ApplicationError):
    status_code = 415
    code = "unsupported_media_type"
    default_message = "Send application/json (an array of points) or application/x-ndjson."


_points_decoder = msgspec.json.Decoder(list[PointIn])
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_point_decoder = msgspec.json.Decoder(PointIn)


def _decode_rejection(index: int, error: msgspec.MsgspecError) -> Rejection:
    message = str(error)
    # msgspec refuses a number that overflows a double ("1e999") with this message;
    # JSON has no NaN or Infinity, so that is how a non-finite value arrives.
    reason = "not_finite" if message.startswith("Number out of range") else "malformed"
    return Rejection(index, reason, message)


def _too_many(count: int, limit: int) -> TooManyPoints:
    return TooManyPoints(
        f"The batch has {count} points; at most {limit} are accepted per request.",
        details={"max_points": limit, "received": count},
    )


def batch_decode(
    *, body: bytes, media_type: str, max_points: int
) -> tuple[list[tuple[int, PointIn]], list[Rejection]]:
    """Splits a request body into well-formed points (with their index) and rejections."""
    if media_type in NDJSON_MEDIA_TYPES or media_type in (JSON_MEDIA_TYPE, ""):
        json_depth_check(body)  # msgspec descends recursively and has no limit of its own
    if media_type in NDJSON_MEDIA_TYPES:
        return _decode_ndjson(body, max_points)
    if media_type == JSON_MEDIA_TYPE or media_type == "":
        return _decode_array(body, max_points)
    raise UnsupportedBatchType(details={"content_type": media_type})


def _decode_array(
    body: bytes, max_points: int
) -> tuple[list[tuple[int, PointIn]], list[Rejection]]:
    try:
        points = _points_decoder.decode(body)
    except msgspec.ValidationError:
        pass  # some element is not a valid point (or not an array): look at each one
    except msgspec.DecodeError as error:  # not JSON at all; the parent of ValidationError
        raise MalformedBatch(details={"body": [str(error)]}) from None
    else:
        if len(points) > max_points:
            raise _too_many(len(points), max_points)
        return list(enumerate(points)), []
    try:
        raw_points = _raw_list_decoder.decode(body)
    except msgspec.MsgspecError as error:
        raise MalformedBatch(details={"body": [str(error)]}) from None
    if len(raw_points) > max_points:
        raise _too_many(len(raw_points), max_points)
    decoded: list[tuple[int, PointIn]] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(raw_points):
        try:
            decoded.append((index, _point_decoder.decode(raw)))
        except msgspec.MsgspecError as error:
            rejected.append(_decode_rejection(index, error))
    return decoded, rejected


def _decode_ndjson(
    body: bytes, max_points: int
) -> tuple[list[tuple[int, PointIn]], list[Rejection]]:
    """Each line is one point; the index is the line's number from 0. Blank lines are skipped."""
    lines = [(index, line) for index, line in enumerate(body.split(b"\n")) if line.strip()]
    if len(lines) > max_points:
        raise _too_many(len(lines), max_points)
    decoded: list[tuple[int, PointIn]] = []
    rejected: list[Rejection] = []
    for index, line in lines:
        try:
            decoded.append((index, _point_decoder.decode(line)))
        except msgspec.MsgspecError as error:
            rejected.append(_decode_rejection(index, error))
    return decoded, rejected


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def points_validate(
    *,
    points: list[tuple[int, PointIn]],
    device_id: int,
    now: datetime,
    max_future: timedelta,
    retention: timedelta,
) -> tuple[list[ValidPoint], list[Rejection]]:
    """Applies the rules msgspec does not: ranges, time window and ownership.

    A point older than the retention window is refused rather than stored in a
    partition that is about to be dropped (or recreated for it).
    """
    latest = now + max_future
    earliest = now - retention
    valid: list[ValidPoint] = []
    rejected: list[Rejection] = []
    for index, point in points:
        reason: tuple[str, str] | None = None
        if point.device_id != device_id:
            reason = ("foreign_device", "device_id is not the device this token belongs to.")
        elif not (
            _finite(point.latitude)
            and _finite(point.longitude)
            and _finite(point.speed)
            and _finite(point.heading)
            and _finite(point.accuracy)
        ):
            reason = ("not_finite", "Every number must be finite.")
        elif not -90.0 <= point.latitude <= 90.0:
            reason = ("latitude_out_of_range", "latitude must be between -90 and 90.")
        elif not -180.0 <= point.longitude <= 180.0:
            reason = ("longitude_out_of_range", "longitude must be between -180 and 180.")
        elif point.speed is not None and point.speed < 0:
            reason = ("speed_out_of_range", "speed must not be negative.")
        elif point.heading is not None and not 0.0 <= point.heading <= 360.0:
            reason = ("heading_out_of_range", "heading must be between 0 and 360.")
        elif point.accuracy is not None and point.accuracy < 0:
            reason = ("accuracy_out_of_range", "accuracy must not be negative.")
        elif point.timestamp.tzinfo is None or point.timestamp.utcoffset() is None:
            reason = ("timestamp_without_timezone", "timestamp must carry a UTC offset.")
        elif point.timestamp > latest:
            reason = (
                "timestamp_in_future",
                f"timestamp is more than {int(max_future.total_seconds())} seconds ahead.",
            )
        elif point.timestamp < earliest:
            reason = ("timestamp_too_old", "timestamp is older than the retention window.")
        if reason is not None:
            rejected.append(Rejection(index, *reason))
            continue
        valid.append(
            ValidPoint(
                index=index,
                recorded_at=point.timestamp.astimezone(UTC),
                latitude=point.latitude,
                longitude=point.longitude,
                speed=point.speed,
                heading=point.heading,
                accuracy=point.accuracy,
            )
        )
    return valid, rejected
