"""Synthetic courier traces for the telemetry simulator and the ingestion benchmark.

Pure and deterministic for a given seed: no Django, no HTTP. A vehicle drives
a random walk along its heading, turning now and then, accelerating and
braking within 0-25 m/s; what it reports is its true position plus a few
metres of GPS noise. On purpose, a configurable fraction of the points sent
repeat an earlier point (same device and timestamp, as a phone re-sending
after a lost answer does) and another fraction are invalid (out of range or
too far in the future), so the server's dedup and rejection paths are
exercised. The generator also keeps the reference the summary is checked
against: how many valid, distinct points each device sent per minute.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

EARTH_RADIUS_M = 6_371_008.8
MAX_SPEED_MPS = 25.0
GPS_JITTER_M = 4.0  # standard deviation of the reported position's error
INVALID_KINDS = ("latitude_out_of_range", "longitude_out_of_range", "timestamp_in_future")


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@dataclass
class Vehicle:
    """The true state of one courier; positions in degrees, speed in m/s, heading in degrees."""

    device_id: int
    latitude: float
    longitude: float
    speed: float
    heading: float

    def advance(self, *, seconds: float, rng: random.Random) -> None:
        # Mostly straight on; sometimes a turn at a junction, a little drift otherwise.
        if rng.random() < 0.02 * seconds:
            self.heading += rng.choice((-90.0, 90.0, 180.0)) + rng.gauss(0, 10)
        else:
            self.heading += rng.gauss(0, 3) * seconds
        self.heading %= 360.0
        # Accelerate or brake by at most 3 m/s², and sometimes stop at a light.
        if self.speed > 0 and rng.random() < 0.005 * seconds:
            self.speed = 0.0
        else:
            self.speed += rng.uniform(-3.0, 3.0) * seconds
        self.speed = min(MAX_SPEED_MPS, max(0.0, self.speed))
        distance = self.speed * seconds
        heading = math.radians(self.heading)
        self.latitude += math.degrees(distance * math.cos(heading) / EARTH_RADIUS_M)
        # Stay away from the poles, where a random walk would wrap around oddly.
        self.latitude = min(80.0, max(-80.0, self.latitude))
        self.longitude += math.degrees(
            distance * math.sin(heading) / (EARTH_RADIUS_M * math.cos(math.radians(self.latitude)))
        )
        self.longitude = (self.longitude + 180.0) % 360.0 - 180.0


def metres_between(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


@dataclass
class TraceStats:
    """What was generated, and so what the server should answer."""

    valid: int = 0  # distinct valid points; the server should accept exactly these
    duplicates: int = 0
    invalid: int = 0
    per_minute: dict[int, Counter[datetime]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.valid + self.duplicates + self.invalid


class TraceGenerator:
    """Points for many vehicles, one tick at a time, with duplicates and invalid points mixed in.

    ``duplicate_fraction`` and ``invalid_fraction`` are shares of all points
    generated. A duplicate repeats one of the device's recent valid points
    unchanged, so it may land in the same batch or a later one.
    """

    def __init__(
        self,
        *,
        device_ids: list[int],
        rate: float,
        duplicate_fraction: float = 0.02,
        invalid_fraction: float = 0.01,
        seed: int | None = None,
        origin: tuple[float, float] = (52.52, 13.405),
        spread_m: float = 10_000.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if not (0 <= duplicate_fraction and 0 <= invalid_fraction):
            raise ValueError("fractions must not be negative")
        if duplicate_fraction + invalid_fraction >= 1:
            raise ValueError("duplicate and invalid fractions must add up to less than 1")
        self.rng = random.Random(seed)  # noqa: S311 (synthetic traces, not secrets)
        self.rate = rate
        self.duplicate_fraction = duplicate_fraction
        self.invalid_fraction = invalid_fraction
        self.stats = TraceStats()
        self.vehicles: dict[int, Vehicle] = {}
        self._recent: dict[int, list[dict[str, Any]]] = {}
        self._last_time: dict[int, datetime] = {}
        self._owed: dict[int, float] = {}
        for device_id in device_ids:
            north = self.rng.uniform(-spread_m, spread_m)
            east = self.rng.uniform(-spread_m, spread_m)
            latitude = origin[0] + math.degrees(north / EARTH_RADIUS_M)
            longitude = origin[1] + math.degrees(
                east / (EARTH_RADIUS_M * math.cos(math.radians(origin[0])))
            )
            self.vehicles[device_id] = Vehicle(
                device_id=device_id,
                latitude=latitude,
                longitude=longitude,
                speed=self.rng.uniform(0, 15),
                heading=self.rng.uniform(0, 360),
            )
            self._recent[device_id] = []
            self._owed[device_id] = 0.0
            self.stats.per_minute[device_id] = Counter()

    def points_for(
        self, device_id: int, *, start: datetime, seconds: float
    ) -> list[dict[str, Any]]:
        """The points one device reports over ``seconds`` from ``start`` (about rate times seconds).

        Valid points are spaced 1/rate apart; successive calls must not go back in time.
        """
        vehicle = self.vehicles[device_id]
        interval = 1.0 / self.rate
        # Carry the fraction over, so a rate below one point per second works too.
        self._owed[device_id] += seconds * self.rate
        count = int(self._owed[device_id] + 1e-9)
        self._owed[device_id] -= count
        points: list[dict[str, Any]] = []
        moment = start
        for _ in range(count):
            draw = self.rng.random()
            recent = self._recent[device_id]
            if draw < self.duplicate_fraction and recent:
                points.append(dict(self.rng.choice(recent)))
                self.stats.duplicates += 1
                continue
            if draw < self.duplicate_fraction + self.invalid_fraction:
                points.append(self._invalid_point(vehicle, moment))
                self.stats.invalid += 1
                continue
            last = self._last_time.get(device_id)
            if last is not None and moment <= last:
                moment = last + timedelta(seconds=interval)
            if last is not None:
                vehicle.advance(seconds=(moment - last).total_seconds(), rng=self.rng)
            self._last_time[device_id] = moment
            point = self._reported(vehicle, moment)
            points.append(point)
            recent.append(point)
            del recent[:-20]
            self.stats.valid += 1
            self.stats.per_minute[device_id][minute_floor(moment)] += 1
            moment += timedelta(seconds=interval)
        return points

    def _reported(self, vehicle: Vehicle, moment: datetime) -> dict[str, Any]:
        north, east = self.rng.gauss(0, GPS_JITTER_M), self.rng.gauss(0, GPS_JITTER_M)
        latitude = vehicle.latitude + math.degrees(north / EARTH_RADIUS_M)
        longitude = vehicle.longitude + math.degrees(
            east / (EARTH_RADIUS_M * math.cos(math.radians(vehicle.latitude)))
        )
        return {
            "device_id": vehicle.device_id,
            "timestamp": iso_utc(moment),
            "latitude": round(min(90.0, max(-90.0, latitude)), 7),
            "longitude": round((longitude + 180.0) % 360.0 - 180.0, 7),
            "speed": round(vehicle.speed, 2),
            "heading": round(vehicle.heading, 1),
            "accuracy": round(abs(self.rng.gauss(GPS_JITTER_M, 1.0)), 1),
        }

    def _invalid_point(self, vehicle: Vehicle, moment: datetime) -> dict[str, Any]:
        point = self._reported(vehicle, moment)
        kind = self.rng.choice(INVALID_KINDS)
        if kind == "latitude_out_of_range":
            point["latitude"] = self.rng.choice((-1, 1)) * self.rng.uniform(90.001, 180.0)
        elif kind == "longitude_out_of_range":
            point["longitude"] = self.rng.choice((-1, 1)) * self.rng.uniform(180.001, 360.0)
        else:
            point["timestamp"] = iso_utc(moment + timedelta(hours=self.rng.uniform(1, 48)))
        return point
