"""POST /api/telemetry/: validation, duplicates, formats, limits and device authentication."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from emporium.core.tests.factories import StaffFactory, UserFactory, client_for
from emporium.delivery import services
from emporium.delivery.models import DevicePosition, TelemetryMinute
from emporium.delivery.tests.support import (
    NEGATIVE_OVERFLOW,
    OVERFLOW,
    TELEMETRY_URL,
    device_client,
    error_of,
    make_device,
    point,
    post_json,
    post_ndjson,
    recent_minute,
    stamp,
    stored_points,
    telemetry_state,
)

pytestmark = pytest.mark.django_db


def test_a_valid_batch_is_stored_with_its_rollup_and_position() -> None:
    device, token = make_device()
    start = recent_minute()
    points = [
        point(device, start + timedelta(seconds=10), 52.5, 13.4, speed=5.0, heading=90.0),
        point(device, start + timedelta(seconds=20), 52.6, 13.5, speed=7.5, accuracy=4.0),
    ]

    response = post_json(device_client(token), points)

    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert stored_points(device) == [
        (start + timedelta(seconds=10), 52.5, 13.4),
        (start + timedelta(seconds=20), 52.6, 13.5),
    ]
    minute = TelemetryMinute.objects.get(device=device)
    assert (minute.minute, minute.point_count) == (start, 2)
    assert minute.latitude_sum == pytest.approx(105.1)
    assert minute.longitude_sum == pytest.approx(26.9)
    assert minute.first_recorded_at == start + timedelta(seconds=10)
    assert minute.last_recorded_at == start + timedelta(seconds=20)
    assert minute.max_speed == 7.5
    position = DevicePosition.objects.get(device=device)
    assert (position.recorded_at, position.latitude, position.longitude) == (
        start + timedelta(seconds=20),
        52.6,
        13.5,
    )
    assert (position.speed, position.heading, position.accuracy) == (7.5, None, 4.0)


def test_ndjson_is_accepted_like_json() -> None:
    device, token = make_device()
    start = recent_minute()
    lines: list[dict[str, Any] | str] = [
        point(device, start + timedelta(seconds=second)) for second in range(3)
    ]

    response = post_ndjson(device_client(token), lines)

    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert [row[0] for row in stored_points(device)] == [
        start + timedelta(seconds=second) for second in range(3)
    ]


def test_ndjson_bad_lines_are_rejected_by_line_number_and_blank_lines_skipped() -> None:
    device, token = make_device()
    start = recent_minute()
    lines: list[dict[str, Any] | str] = [
        point(device, start),
        "",
        "{not json",
        point(device, start + timedelta(seconds=1)),
        "[1, 2]",
    ]

    response = post_ndjson(device_client(token), lines)

    body = response.json()
    assert response.status_code == 200
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert [(entry["index"], entry["reason"]) for entry in body["rejected"]] == [
        (2, "malformed"),
        (4, "malformed"),
    ]


def test_ndjson_media_type_parameters_are_ignored() -> None:
    device, token = make_device()
    body = json.dumps(point(device, recent_minute())) + "\n"

    response = device_client(token).post(
        TELEMETRY_URL, data=body, content_type="application/x-ndjson; charset=utf-8"
    )

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


NOW_OFFSET = timedelta(minutes=30)


def _bad_points(device_id: int) -> list[tuple[str, dict[str, Any] | Any]]:
    """(expected reason, point) for every rule a point can break."""
    moment = timezone.now() - NOW_OFFSET
    good = point(device_id, moment)
    naive = moment.replace(tzinfo=None).isoformat()
    future = stamp(timezone.now() + timedelta(minutes=6))
    too_old = stamp(timezone.now() - timedelta(days=31))
    return [
        ("malformed", {key: value for key, value in good.items() if key != "latitude"}),
        ("malformed", {**good, "latitude": "52.5"}),
        ("malformed", {**good, "device_id": "1"}),
        ("malformed", {**good, "timestamp": "yesterday"}),
        ("malformed", {**good, "speed": True}),
        ("malformed", "just a string"),
        ("malformed", [good]),
        ("not_finite", {**good, "latitude": OVERFLOW}),
        ("not_finite", {**good, "speed": NEGATIVE_OVERFLOW}),
        ("latitude_out_of_range", {**good, "latitude": 90.000001}),
        ("latitude_out_of_range", {**good, "latitude": -91}),
        ("longitude_out_of_range", {**good, "longitude": 180.5}),
        ("longitude_out_of_range", {**good, "longitude": -181}),
        ("speed_out_of_range", {**good, "speed": -0.1}),
        ("heading_out_of_range", {**good, "heading": 361}),
        ("heading_out_of_range", {**good, "heading": -1}),
        ("accuracy_out_of_range", {**good, "accuracy": -5}),
        ("timestamp_without_timezone", {**good, "timestamp": naive}),
        ("timestamp_in_future", {**good, "timestamp": future}),
        ("timestamp_too_old", {**good, "timestamp": too_old}),
        ("foreign_device", {**good, "device_id": device_id + 1000}),
    ]


def test_every_rejection_reason_is_reported_with_its_index_and_valid_points_are_kept() -> None:
    device, token = make_device()
    bad = _bad_points(device.pk)
    valid_moment = recent_minute(10)
    batch = [point(device, valid_moment)]
    batch += [entry for _, entry in bad]
    batch += [point(device, valid_moment + timedelta(seconds=1))]

    response = post_json(device_client(token), batch)

    body = response.json()
    assert response.status_code == 200
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert [(entry["index"], entry["reason"]) for entry in body["rejected"]] == [
        (index + 1, reason) for index, (reason, _) in enumerate(bad)
    ]
    assert all(entry["message"] for entry in body["rejected"])
    assert stored_points(device) == [
        (valid_moment, 52.52, 13.405),
        (valid_moment + timedelta(seconds=1), 52.52, 13.405),
    ]


@pytest.mark.parametrize("case", range(21))
def test_each_rejection_reason_alone_writes_nothing(case: int) -> None:
    device, token = make_device()
    reason, bad_point = _bad_points(device.pk)[case]
    before = telemetry_state()

    response = post_json(device_client(token), [bad_point])

    assert response.status_code == 200
    assert response.json()["accepted"] == 0
    assert [(entry["index"], entry["reason"]) for entry in response.json()["rejected"]] == [
        (0, reason)
    ]
    assert telemetry_state() == before


def test_the_boundaries_themselves_are_valid() -> None:
    device, token = make_device()
    start = recent_minute()
    batch = [
        point(device, start, 90, 180, speed=0, heading=0, accuracy=0),
        point(device, start + timedelta(seconds=1), -90, -180, heading=360),
        point(device, timezone.now() + timedelta(minutes=4)),
        {**point(device, start + timedelta(seconds=2)), "timestamp": "2020-01-01T00:00:00+00:00"}
        | {"timestamp": stamp(start + timedelta(seconds=2)).replace("Z", "+05:30")},
        {**point(device, start + timedelta(seconds=3)), "unknown_field": "ignored"},
    ]

    response = post_json(device_client(token), batch)

    assert response.json() == {"accepted": 5, "duplicates": 0, "rejected": []}


def test_a_timestamp_with_an_offset_is_stored_in_utc() -> None:
    device, token = make_device()
    moment = recent_minute()
    local = moment.astimezone(timezone.get_fixed_timezone(120))

    post_json(device_client(token), [{**point(device, moment), "timestamp": local.isoformat()}])

    assert stored_points(device)[0][0] == moment


def test_duplicates_within_a_batch_keep_the_first_point() -> None:
    device, token = make_device()
    moment = recent_minute()
    batch = [
        point(device, moment, 10.0, 20.0),
        point(device, moment + timedelta(seconds=1), 10.1, 20.1),
        point(device, moment, 11.0, 21.0),  # same instant as the first
        {**point(device, moment, 12.0, 22.0), "timestamp": stamp(moment).replace("Z", "+00:00")},
    ]

    response = post_json(device_client(token), batch)

    assert response.json() == {"accepted": 2, "duplicates": 2, "rejected": []}
    assert stored_points(device) == [
        (moment, 10.0, 20.0),
        (moment + timedelta(seconds=1), 10.1, 20.1),
    ]
    assert TelemetryMinute.objects.get(device=device).point_count == 2


def test_duplicates_across_batches_are_dropped_and_change_no_rollup() -> None:
    device, token = make_device()
    moment = recent_minute()
    client = device_client(token)
    post_json(client, [point(device, moment + timedelta(seconds=s)) for s in range(3)])
    minutes_before = telemetry_state()["minutes"]

    response = post_json(
        client,
        [point(device, moment + timedelta(seconds=s), 1.0, 1.0) for s in (1, 2, 3, 4)],
    )

    assert response.json() == {"accepted": 2, "duplicates": 2, "rejected": []}
    assert [row[1:] for row in stored_points(device)] == [(52.52, 13.405)] * 3 + [(1.0, 1.0)] * 2
    assert TelemetryMinute.objects.get(device=device).point_count == 5
    assert minutes_before != telemetry_state()["minutes"]


def test_a_resent_batch_is_harmless() -> None:
    device, token = make_device()
    start = recent_minute()
    client = device_client(token)
    batch = [
        point(device, start + timedelta(seconds=7 * s), 52.5 + s / 1000, 13.4, speed=float(s))
        for s in range(20)
    ]
    first = post_json(client, batch)
    after_first = telemetry_state()

    second = post_json(client, batch)

    assert first.json() == {"accepted": 20, "duplicates": 0, "rejected": []}
    assert second.json() == {"accepted": 0, "duplicates": 20, "rejected": []}
    assert telemetry_state() == after_first


def test_the_same_timestamp_from_two_devices_is_not_a_duplicate() -> None:
    first, first_token = make_device("one")
    second, second_token = make_device("two")
    moment = recent_minute()

    post_json(device_client(first_token), [point(first, moment)])
    response = post_json(device_client(second_token), [point(second, moment)])

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


def test_an_empty_batch_stores_nothing() -> None:
    _, token = make_device()

    response = post_json(device_client(token), [])

    assert response.json() == {"accepted": 0, "duplicates": 0, "rejected": []}


@override_settings(EMPORIUM_TELEMETRY_MAX_POINTS=5)
@pytest.mark.parametrize("ndjson", [False, True], ids=["json", "ndjson"])
def test_a_batch_over_the_limit_is_refused_whole_with_413(ndjson: bool) -> None:
    device, token = make_device()
    start = recent_minute()
    batch: list[Any] = [point(device, start + timedelta(seconds=s)) for s in range(6)]
    before = telemetry_state()

    client = device_client(token)
    response = post_ndjson(client, batch) if ndjson else post_json(client, batch)

    assert response.status_code == 413
    assert error_of(response) == {
        "code": "too_many_points",
        "message": "The batch has 6 points; at most 5 are accepted per request.",
        "details": {"max_points": 5, "received": 6},
    }
    assert telemetry_state() == before


@override_settings(EMPORIUM_TELEMETRY_MAX_POINTS=5)
def test_a_batch_of_exactly_the_limit_is_accepted() -> None:
    device, token = make_device()
    start = recent_minute()

    response = post_json(
        device_client(token), [point(device, start + timedelta(seconds=s)) for s in range(5)]
    )

    assert response.json()["accepted"] == 5


def test_the_default_limit_is_ten_thousand_points() -> None:
    device, token = make_device()
    start = recent_minute()
    # Short points so 10,001 of them fit under the 2 MiB body limit.
    batch = [
        {"device_id": device.pk, "timestamp": stamp(start), "latitude": 1, "longitude": 1}
    ] * 10_001

    response = post_json(device_client(token), batch)

    assert response.status_code == 413
    assert error_of(response)["details"] == {"max_points": 10_000, "received": 10_001}


def test_a_body_over_the_size_limit_is_refused_with_413() -> None:
    _, token = make_device()

    response = device_client(token).post(
        TELEMETRY_URL, data=b"[" + b" " * (3 * 1024 * 1024) + b"]", content_type="application/json"
    )

    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "malformed_request"),
        ('{"device_id": 1}', "application/json", 400, "malformed_request"),
        ("[1, 2", "application/json", 400, "malformed_request"),
        ("a=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("<points/>", "application/xml", 415, "unsupported_media_type"),
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_in_the_error_shape(
    body: str, content_type: str, status: int, code: str
) -> None:
    _, token = make_device()
    before = telemetry_state()

    response = device_client(token).post(TELEMETRY_URL, data=body, content_type=content_type)

    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert telemetry_state() == before


# -- authentication ----------------------------------------------------------------------


def test_a_device_cannot_post_points_as_another_device() -> None:
    device, token = make_device("mine")
    other, _ = make_device("someone else's")
    moment = recent_minute()

    response = post_json(
        device_client(token), [point(other, moment), point(device, moment + timedelta(seconds=1))]
    )

    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [
            {
                "index": 0,
                "reason": "foreign_device",
                "message": "device_id is not the device this token belongs to.",
            }
        ],
    }
    assert stored_points(other) == []
    assert not TelemetryMinute.objects.filter(device=other).exists()
    assert not DevicePosition.objects.filter(device=other).exists()


@pytest.mark.parametrize(
    "authorization",
    [None, "Device", "Device dev_not-a-real-token", "Device a b", "Token abc", "Bearer abc"],
)
def test_posting_without_a_valid_device_token_is_401(authorization: str | None) -> None:
    device, _ = make_device()
    client = device_client("unused")
    client.credentials(**({"HTTP_AUTHORIZATION": authorization} if authorization else {}))
    before = telemetry_state()

    response = post_json(client, [point(device, recent_minute())])

    assert response.status_code == 401
    assert error_of(response)["code"] in {"not_authenticated", "authentication_failed"}
    assert response["WWW-Authenticate"] == "Device"
    assert telemetry_state() == before


def test_a_revoked_token_is_401_and_stores_nothing() -> None:
    device, token = make_device()
    services.device_revoke(device=device)
    before = telemetry_state()

    response = post_json(device_client(token), [point(device, recent_minute())])

    assert response.status_code == 401
    assert error_of(response) == {
        "code": "authentication_failed",
        "message": "The device token is not valid or has been revoked.",
        "details": {},
    }
    assert telemetry_state() == before


def test_a_rotated_token_replaces_the_old_one() -> None:
    device, old_token = make_device()
    new_token = services.device_token_rotate(device=device).token

    old = post_json(device_client(old_token), [point(device, recent_minute())])
    new = post_json(device_client(new_token), [point(device, recent_minute())])

    assert old.status_code == 401
    assert new.json()["accepted"] == 1


@pytest.mark.parametrize("factory", [UserFactory, StaffFactory], ids=["customer", "staff"])
def test_users_cannot_post_telemetry_even_with_a_valid_jwt(factory: Any) -> None:
    device, _ = make_device()

    response = post_json(client_for(factory()), [point(device, recent_minute())])

    assert response.status_code == 401
    assert stored_points(device) == []


def test_only_post_is_allowed() -> None:
    _, token = make_device()

    response = device_client(token).get(TELEMETRY_URL)

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_a_batch_costs_the_same_few_statements_whatever_its_size() -> None:
    device, token = make_device()
    client = device_client(token)
    start = recent_minute()
    post_json(client, [point(device, start)])  # the device's position row and today's partition

    counts = []
    for offset, size in ((1, 10), (11, 500)):
        batch = [point(device, start + timedelta(seconds=offset + s / 10)) for s in range(size)]
        with CaptureQueriesContext(connection) as queries:
            assert post_json(client, batch).json()["accepted"] == size
        counts.append(len(queries.captured_queries))

    # PostgreSQL: device lookup, position lock, the one statement that stores
    # points, minutes and position, and the savepoint pair of the test's
    # transaction (the partition check is skipped for a day the process has
    # seen a partition for). SQLite: device lookup, position lock, duplicate probe, the stored
    # points around the batch, the points, the minutes, the position, the savepoints.
    assert counts == ([5, 5] if connection.vendor == "postgresql" else [9, 9])
