"""Minute rollups against a reference computed here from the raw points."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from emporium.core.tests.factories import StaffFactory, client_for
from emporium.delivery.models import TelemetryMinute
from emporium.delivery.rollups import Fix, minute_deltas
from emporium.delivery.tests.support import (
    SUMMARY_URL,
    device_client,
    make_device,
    point,
    post_json,
    recent_minute,
    stamp,
)

pytestmark = pytest.mark.django_db

RADIUS_M = 6_371_008.8


def reference_distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance, written out independently of the code under test."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    term = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * RADIUS_M * math.atan2(math.sqrt(term), math.sqrt(1 - term))


@dataclass
class Expected:
    count: int = 0
    latitude_sum: float = 0.0
    longitude_sum: float = 0.0
    first: datetime | None = None
    last: datetime | None = None
    distance_m: float = 0.0
    max_speed: float | None = None


def reference_minutes(points: list[dict[str, Any]]) -> dict[datetime, Expected]:
    """Per-minute figures of a device's whole, deduplicated, time-ordered trace."""
    by_time: dict[datetime, dict[str, Any]] = {}
    for raw in points:
        by_time.setdefault(datetime.fromisoformat(raw["timestamp"]), raw)
    minutes: dict[datetime, Expected] = defaultdict(Expected)
    previous: dict[str, Any] | None = None
    for moment in sorted(by_time):
        raw = by_time[moment]
        expected = minutes[moment.replace(second=0, microsecond=0)]
        expected.count += 1
        expected.latitude_sum += raw["latitude"]
        expected.longitude_sum += raw["longitude"]
        expected.first = expected.first or moment
        expected.last = moment
        if previous is not None:
            expected.distance_m += reference_distance_m(
                (previous["latitude"], previous["longitude"]), (raw["latitude"], raw["longitude"])
            )
        speed = raw.get("speed")
        if speed is not None and (expected.max_speed is None or speed > expected.max_speed):
            expected.max_speed = speed
        previous = raw
    return dict(minutes)


def random_trace(device_id: int, start: datetime, rng: random.Random) -> list[dict[str, Any]]:
    """A courier moving at a plausible speed, with jitter, some points without speed."""
    points = []
    moment = start + timedelta(milliseconds=rng.randint(0, 999))
    latitude, longitude = 48.85 + rng.random() / 10, 2.35 + rng.random() / 10
    heading = rng.uniform(0, 2 * math.pi)
    while moment < start + timedelta(minutes=7):
        heading += rng.gauss(0, 0.3)
        step_m = rng.uniform(0, 15)
        latitude += step_m * math.cos(heading) / 111_320 + rng.gauss(0, 2e-6)
        longitude += step_m * math.sin(heading) / (111_320 * math.cos(math.radians(latitude)))
        extra = {} if rng.random() < 0.2 else {"speed": round(rng.uniform(0, 20), 3)}
        points.append(point(device_id, moment, latitude, longitude, **extra))
        moment += timedelta(milliseconds=rng.randint(200, 3000))
    return points


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_match_the_reference_over_batches_with_duplicates_and_a_resend(seed: int) -> None:
    rng = random.Random(seed)
    device, token = make_device()
    client = device_client(token)
    trace = random_trace(device.pk, recent_minute(20), rng)
    # Time-ordered batches of random sizes; each repeats a few points of the one
    # before it, and one batch is sent twice.
    batches: list[list[dict[str, Any]]] = []
    position = 0
    while position < len(trace):
        size = rng.randint(1, 60)
        overlap = rng.randint(0, min(position, 5))
        batches.append(trace[position - overlap : position + size])
        position += size
    resent = rng.randrange(len(batches))
    batches.insert(resent + 1, batches[resent])

    totals = {"accepted": 0, "duplicates": 0}
    for batch in batches:
        body = post_json(client, batch).json()
        assert body["rejected"] == []
        totals["accepted"] += body["accepted"]
        totals["duplicates"] += body["duplicates"]

    expected = reference_minutes(trace)
    assert totals == {
        "accepted": len(trace),
        "duplicates": sum(len(batch) for batch in batches) - len(trace),
    }
    stored = {row.minute: row for row in TelemetryMinute.objects.filter(device=device)}
    assert sorted(stored) == sorted(expected)
    for minute, figures in expected.items():
        row = stored[minute]
        assert row.point_count == figures.count
        assert row.latitude_sum / row.point_count == pytest.approx(
            figures.latitude_sum / figures.count, rel=1e-12
        )
        assert row.longitude_sum / row.point_count == pytest.approx(
            figures.longitude_sum / figures.count, rel=1e-12
        )
        assert (row.first_recorded_at, row.last_recorded_at) == (figures.first, figures.last)
        assert row.distance_m == pytest.approx(figures.distance_m, rel=1e-9, abs=1e-6)
        assert row.max_speed == figures.max_speed

    # The daily summary adds the minutes up to the figures of the whole trace (two
    # windows if the trace happens to straddle midnight UTC).
    summary = client_for(StaffFactory()).get(
        SUMMARY_URL,
        {"device_id": device.pk, "window": "1d", "from": stamp(recent_minute(60 * 24))},
    )
    windows = summary.json()["results"]
    assert sum(window["count"] for window in windows) == len(trace)
    assert sum(window["latitude"] * window["count"] for window in windows) / len(
        trace
    ) == pytest.approx(sum(raw["latitude"] for raw in trace) / len(trace), rel=1e-12)
    assert sum(window["distance_m"] for window in windows) == pytest.approx(
        sum(figures.distance_m for figures in expected.values()), rel=1e-9
    )
    speeds = [raw["speed"] for raw in trace if "speed" in raw]
    assert max(window["max_speed"] for window in windows) == max(speeds)


def test_a_batch_continues_the_distance_from_the_previous_batch() -> None:
    device, token = make_device()
    client = device_client(token)
    start = recent_minute()
    first = point(device, start + timedelta(seconds=59), 0.0, 0.0)
    second = point(device, start + timedelta(seconds=61), 0.0, 0.001)

    post_json(client, [first])
    post_json(client, [second])

    minutes = dict(
        TelemetryMinute.objects.filter(device=device).values_list("minute", "distance_m")
    )
    assert minutes == {
        start: 0.0,
        start + timedelta(minutes=1): pytest.approx(reference_distance_m((0, 0), (0, 0.001))),
    }


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_rollups_match_the_reference_when_batches_arrive_out_of_order(seed: int) -> None:
    """Late points land between stored ones, at minute boundaries and inside minutes."""
    rng = random.Random(seed)
    device, token = make_device()
    client = device_client(token)
    trace = random_trace(device.pk, recent_minute(20), rng)
    # Points dealt into batches at random (so every batch spans the whole trace
    # and interleaves with the others), sent in random order, one sent twice.
    batches: list[list[dict[str, Any]]] = [[] for _ in range(rng.randint(2, 6))]
    for raw in trace:
        rng.choice(batches).append(raw)
    batches = [batch for batch in batches if batch]
    for batch in batches:
        rng.shuffle(batch)
    batches.append(rng.choice(batches))
    rng.shuffle(batches)

    accepted = 0
    for batch in batches:
        body = post_json(client, batch).json()
        assert body["rejected"] == []
        accepted += body["accepted"]

    assert accepted == len(trace)
    expected = reference_minutes(trace)
    stored = {row.minute: row for row in TelemetryMinute.objects.filter(device=device)}
    assert sorted(stored) == sorted(expected)
    for minute, figures in expected.items():
        row = stored[minute]
        assert row.point_count == figures.count
        assert (row.first_recorded_at, row.last_recorded_at) == (figures.first, figures.last)
        assert row.distance_m == pytest.approx(figures.distance_m, rel=1e-9, abs=1e-6)
        assert row.max_speed == figures.max_speed
        assert row.latitude_sum == pytest.approx(figures.latitude_sum, rel=1e-12)


def test_a_late_point_replaces_the_segment_it_splits() -> None:
    device, token = make_device()
    client = device_client(token)
    start = recent_minute()
    post_json(client, [point(device, start + timedelta(seconds=10), 0.0, 0.0)])
    post_json(client, [point(device, start + timedelta(seconds=70), 0.0, 0.002)])
    # Arrives last, lies between the two, off their line: the path now goes through it.
    post_json(client, [point(device, start + timedelta(seconds=40), 0.001, 0.001)])

    minutes = dict(
        TelemetryMinute.objects.filter(device=device).values_list("minute", "distance_m")
    )
    assert minutes == {
        start: pytest.approx(reference_distance_m((0, 0), (0.001, 0.001))),
        start + timedelta(minutes=1): pytest.approx(
            reference_distance_m((0.001, 0.001), (0, 0.002))
        ),
    }


T0 = datetime.fromisoformat("2025-03-01T10:00:00+00:00")


def fix(seconds: int, longitude: float, speed: float | None = None) -> Fix:
    return Fix(T0 + timedelta(seconds=seconds), 0.0, longitude, speed)


def test_minute_deltas_with_nothing_stored_start_from_the_first_point() -> None:
    deltas = minute_deltas(fixes=[fix(70, 0.002), fix(10, 0.0, 3.0), fix(20, 0.001)], stored=[])

    assert [(delta.minute, delta.point_count) for delta in deltas] == [
        (T0, 2),
        (T0 + timedelta(minutes=1), 1),
    ]
    step = reference_distance_m((0, 0), (0, 0.001))
    assert deltas[0].distance_m == pytest.approx(step)
    assert deltas[1].distance_m == pytest.approx(step)
    assert (deltas[0].first_recorded_at, deltas[0].last_recorded_at) == (
        T0 + timedelta(seconds=10),
        T0 + timedelta(seconds=20),
    )
    assert (deltas[0].max_speed, deltas[1].max_speed) == (3.0, None)


def test_minute_deltas_continue_from_the_stored_point_before() -> None:
    deltas = minute_deltas(fixes=[fix(30, 0.001)], stored=[fix(5, 0.0)])

    (delta,) = deltas
    assert delta.distance_m == pytest.approx(reference_distance_m((0, 0), (0, 0.001)))
    assert (delta.point_count, delta.first_recorded_at) == (1, T0 + timedelta(seconds=30))


def test_minute_deltas_of_a_late_point_take_away_the_segment_it_splits() -> None:
    # Stored: 10 s and 90 s (next minute). New: 40 s, between them.
    deltas = minute_deltas(fixes=[fix(40, 0.001)], stored=[fix(10, 0.0), fix(90, 0.003)])

    first, second = deltas
    assert (first.minute, first.point_count) == (T0, 1)
    assert first.distance_m == pytest.approx(reference_distance_m((0, 0), (0, 0.001)))
    # The next minute has no new point; its distance changes from 10->90 to 40->90.
    # With no point it has no bounds, and adding it keeps the stored minute's.
    assert (second.minute, second.point_count) == (T0 + timedelta(minutes=1), 0)
    assert second.distance_m == pytest.approx(
        reference_distance_m((0, 0.001), (0, 0.003)) - reference_distance_m((0, 0), (0, 0.003))
    )
    assert second.first_recorded_at is second.last_recorded_at is None
