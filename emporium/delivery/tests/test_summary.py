"""GET /api/telemetry/summary/ and /api/telemetry/latest/: windows, parameters, permissions."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.fields import DateTimeField
from rest_framework.test import APIClient

from emporium.core.tests.factories import StaffFactory, UserFactory, client_for
from emporium.delivery.tests.support import (
    LATEST_URL,
    SUMMARY_URL,
    device_client,
    error_of,
    make_device,
    point,
    post_json,
    stamp,
)
from emporium.delivery.tests.test_rollups import reference_distance_m

pytestmark = pytest.mark.django_db

WINDOW_SECONDS = {"1m": 60, "15m": 900, "1h": 3600, "1d": 86400}


def rendered(moment: datetime) -> str:
    return DateTimeField().to_representation(moment)


@pytest.fixture
def base() -> datetime:
    return (timezone.now() - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def trace(base: datetime) -> tuple[int, list[dict[str, Any]]]:
    device, token = make_device()
    offsets_and_positions = [
        (timedelta(seconds=10), 10.0, 20.0, 3.0),
        (timedelta(seconds=50), 12.0, 22.0, None),
        (timedelta(minutes=1, seconds=30), 14.0, 24.0, 9.5),
        (timedelta(minutes=16), 16.0, 26.0, 1.0),
        (timedelta(hours=1, minutes=5), 18.0, 28.0, None),
    ]
    points = [
        point(device, base + offset, latitude, longitude, **({"speed": speed} if speed else {}))
        for offset, latitude, longitude, speed in offsets_and_positions
    ]
    assert post_json(device_client(token), points).json()["accepted"] == 5
    return device.pk, points


def expected_windows(points: list[dict[str, Any]], seconds: int) -> list[dict[str, Any]]:
    """The summary computed here from the raw points, for comparison."""
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    previous: dict[str, Any] | None = None
    distances: dict[int, float] = defaultdict(float)
    for raw in sorted(points, key=lambda raw: raw["timestamp"]):
        moment = datetime.fromisoformat(raw["timestamp"])
        key = math.floor(moment.timestamp() / seconds) * seconds
        groups[key].append(raw)
        if previous is not None:
            distances[key] += reference_distance_m(
                (previous["latitude"], previous["longitude"]), (raw["latitude"], raw["longitude"])
            )
        previous = raw
    windows = []
    for key in sorted(groups):
        members = groups[key]
        start = datetime.fromtimestamp(key, tz=UTC)
        speeds = [raw["speed"] for raw in members if "speed" in raw]
        windows.append(
            {
                "start": rendered(start),
                "end": rendered(start + timedelta(seconds=seconds)),
                "count": len(members),
                "latitude": pytest.approx(sum(raw["latitude"] for raw in members) / len(members)),
                "longitude": pytest.approx(sum(raw["longitude"] for raw in members) / len(members)),
                "first_seen": rendered(datetime.fromisoformat(members[0]["timestamp"])),
                "last_seen": rendered(datetime.fromisoformat(members[-1]["timestamp"])),
                "distance_m": pytest.approx(distances[key]),
                "max_speed": max(speeds) if speeds else None,
            }
        )
    return windows


@pytest.mark.parametrize("window", ["1m", "15m", "1h", "1d"])
def test_each_window_size_matches_a_computation_from_the_raw_points(
    window: str, base: datetime, trace: tuple[int, list[dict[str, Any]]]
) -> None:
    device_id, points = trace
    start, end = base - timedelta(hours=1), base + timedelta(hours=2)

    response = client_for(StaffFactory()).get(
        SUMMARY_URL,
        {"device_id": device_id, "window": window, "from": stamp(start), "to": stamp(end)},
    )

    assert response.status_code == 200
    assert response.json() == {
        "device_id": device_id,
        "window": window,
        "from": rendered(start),
        "to": rendered(end),
        "results": expected_windows(points, WINDOW_SECONDS[window]),
    }


def test_fifteen_minute_windows_in_figures(
    base: datetime, trace: tuple[int, list[dict[str, Any]]]
) -> None:
    device_id, _ = trace

    response = client_for(StaffFactory()).get(
        SUMMARY_URL,
        {
            "device_id": device_id,
            "window": "15m",
            "from": stamp(base),
            "to": stamp(base + timedelta(minutes=30)),
        },
    )

    results = response.json()["results"]
    assert [(row["start"], row["count"]) for row in results] == [
        (rendered(base), 3),
        (rendered(base + timedelta(minutes=15)), 1),
    ]
    assert (results[0]["latitude"], results[0]["longitude"]) == (12.0, 22.0)
    assert (results[0]["first_seen"], results[0]["last_seen"]) == (
        rendered(base + timedelta(seconds=10)),
        rendered(base + timedelta(minutes=1, seconds=30)),
    )
    assert results[0]["max_speed"] == 9.5
    assert (results[1]["latitude"], results[1]["longitude"], results[1]["max_speed"]) == (
        16.0,
        26.0,
        1.0,
    )


def test_from_is_rounded_down_to_the_minute_and_to_is_exclusive(
    base: datetime, trace: tuple[int, list[dict[str, Any]]]
) -> None:
    device_id, _ = trace
    staff = client_for(StaffFactory())

    inside = staff.get(
        SUMMARY_URL,
        {
            "device_id": device_id,
            "window": "1h",
            "from": stamp(base + timedelta(seconds=30)),
            "to": stamp(base + timedelta(minutes=16)),
        },
    )
    later = staff.get(
        SUMMARY_URL,
        {
            "device_id": device_id,
            "window": "1h",
            "from": stamp(base + timedelta(minutes=1)),
            "to": stamp(base + timedelta(minutes=16, seconds=1)),
        },
    )

    assert [row["count"] for row in inside.json()["results"]] == [3]
    assert [row["count"] for row in later.json()["results"]] == [2]


def test_the_default_span_is_the_last_hour_in_minutes() -> None:
    device, token = make_device()
    recent = timezone.now() - timedelta(minutes=10)
    old = timezone.now() - timedelta(minutes=90)
    post_json(device_client(token), [point(device, old), point(device, recent)])

    response = client_for(StaffFactory()).get(SUMMARY_URL, {"device_id": device.pk})

    body = response.json()
    assert body["window"] == "1m"
    assert [row["first_seen"] for row in body["results"]] == [rendered(recent)]


def test_a_device_without_points_has_an_empty_summary() -> None:
    device, _ = make_device()

    response = client_for(StaffFactory()).get(SUMMARY_URL, {"device_id": device.pk})

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_the_summary_reads_rollups_only_in_a_fixed_number_of_queries(
    base: datetime, trace: tuple[int, list[dict[str, Any]]]
) -> None:
    device_id, _ = trace
    staff = client_for(StaffFactory())

    with CaptureQueriesContext(connection) as queries:
        response = staff.get(SUMMARY_URL, {"device_id": device_id, "window": "1m"})

    assert response.status_code == 200
    # The user (JWT), the user's permissions, the device, the rollups; never the raw points.
    assert len(queries.captured_queries) == 4
    assert not any("delivery_telemetry_point" in query["sql"] for query in queries)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "device_id"),
        ({"device_id": "abc"}, "device_id"),
        ({"device_id": "0"}, "device_id"),
        ({"device_id": str(2**63)}, "device_id"),
        ({"device_id": "1", "window": "5m"}, "window"),
        ({"device_id": "1", "from": "yesterday"}, "from"),
        ({"device_id": "1", "to": "2025-13-01T00:00:00Z"}, "to"),
        (
            {"device_id": "1", "from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"},
            "from",
        ),
        (
            {"device_id": "1", "from": "2025-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"},
            "from",
        ),
        (
            {
                "device_id": "1",
                "window": "1m",
                "from": "2025-01-01T00:00:00Z",
                "to": "2025-01-03T00:00:01Z",
            },
            "window",
        ),
    ],
)
def test_bad_parameters_are_400_in_the_error_shape(params: dict[str, str], field: str) -> None:
    make_device()

    response = client_for(StaffFactory()).get(SUMMARY_URL, params)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert list(error["details"]) == [field]


def test_the_window_limit_itself_is_accepted() -> None:
    device, _ = make_device()

    response = client_for(StaffFactory()).get(
        SUMMARY_URL,
        {
            "device_id": device.pk,
            "window": "1m",
            "from": "2025-01-01T00:00:00Z",
            "to": "2025-01-03T00:00:00Z",
        },
    )

    assert response.status_code == 200


def test_an_unknown_device_is_404() -> None:
    response = client_for(StaffFactory()).get(SUMMARY_URL, {"device_id": 999_999})

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize("url", [SUMMARY_URL, LATEST_URL])
def test_customers_cannot_read_summaries_or_positions(url: str) -> None:
    device, _ = make_device()

    response = client_for(UserFactory()).get(url, {"device_id": device.pk})

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"


@pytest.mark.parametrize("url", [SUMMARY_URL, LATEST_URL])
def test_anonymous_callers_and_devices_cannot_read_summaries_or_positions(url: str) -> None:
    device, token = make_device()

    anonymous = APIClient().get(url, {"device_id": device.pk})
    as_device = device_client(token).get(url, {"device_id": device.pk})

    assert anonymous.status_code == as_device.status_code == 401
    assert error_of(anonymous)["code"] == "not_authenticated"


# -- latest ------------------------------------------------------------------------------


def test_latest_is_the_newest_point_even_after_a_late_batch() -> None:
    device, token = make_device()
    client = device_client(token)
    newest = (timezone.now() - timedelta(minutes=1)).replace(microsecond=250_000)
    post_json(
        client,
        [
            point(device, newest - timedelta(seconds=5), 1.0, 1.0),
            point(device, newest, 2.0, 3.0, speed=4.5, heading=180.0, accuracy=6.0),
        ],
    )
    post_json(client, [point(device, newest - timedelta(minutes=10), 9.0, 9.0)])  # late

    response = client_for(StaffFactory()).get(LATEST_URL, {"device_id": device.pk})

    assert response.status_code == 200
    assert response.json() == {
        "device_id": device.pk,
        "recorded_at": rendered(newest),
        "latitude": 2.0,
        "longitude": 3.0,
        "speed": 4.5,
        "heading": 180.0,
        "accuracy": 6.0,
    }


def test_latest_of_a_silent_device_is_404_no_position() -> None:
    device, _ = make_device()

    response = client_for(StaffFactory()).get(LATEST_URL, {"device_id": device.pk})

    assert response.status_code == 404
    assert error_of(response) == {
        "code": "no_position",
        "message": "This device has not reported a position yet.",
        "details": {},
    }


@pytest.mark.parametrize(
    ("params", "status"), [({}, 400), ({"device_id": "x"}, 400), ({"device_id": "999999"}, 404)]
)
def test_latest_with_bad_or_unknown_device_ids(params: dict[str, str], status: int) -> None:
    response = client_for(StaffFactory()).get(LATEST_URL, params)

    assert response.status_code == status
    assert error_of(response)["code"] == ("validation_error" if status == 400 else "not_found")
