"""The telemetry simulator: its traces' properties, and a real run against a live server."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from emporium.accounts.models import User
from emporium.delivery.auth import device_token_hash
from emporium.delivery.management.commands.simulate_telemetry import issue_devices
from emporium.delivery.models import CourierDevice, TelemetryPoint
from emporium.delivery.simulation import MAX_SPEED_MPS, TraceGenerator, metres_between
from emporium.delivery.tests.support import is_postgresql, make_device

START = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def generate(**options: Any) -> tuple[TraceGenerator, dict[int, list[dict[str, Any]]]]:
    """Ten minutes of points for a few devices, generated one second at a time."""
    generator = TraceGenerator(device_ids=[1, 2, 3], rate=2, seed=7, **options)
    points: dict[int, list[dict[str, Any]]] = {1: [], 2: [], 3: []}
    for second in range(600):
        for device_id, sent in points.items():
            sent.extend(
                generator.points_for(device_id, start=START + timedelta(seconds=second), seconds=1)
            )
    return generator, points


def is_valid(point: dict[str, Any]) -> bool:
    return (
        -90 <= point["latitude"] <= 90
        and -180 <= point["longitude"] <= 180
        and parse(point["timestamp"]) < START + timedelta(minutes=15)
    )


def test_clean_traces_have_valid_positions_and_bounded_speeds() -> None:
    generator, points = generate(duplicate_fraction=0, invalid_fraction=0)

    for device_id, sent in points.items():
        assert len(sent) == 1200
        assert all(point["device_id"] == device_id for point in sent)
        assert all(is_valid(point) for point in sent)
        assert all(0 <= point["speed"] <= MAX_SPEED_MPS for point in sent)
        assert all(0 <= point["heading"] <= 360 for point in sent)
        times = [parse(point["timestamp"]) for point in sent]
        assert times == sorted(times)
        assert len(set(times)) == len(times)
        # The reported fixes are the true path plus a few metres of noise: between two
        # fixes half a second apart, at most 25 m/s plus the noise of both (±4 m each).
        for before, after in itertools.pairwise(sent):
            step = metres_between(
                before["latitude"], before["longitude"], after["latitude"], after["longitude"]
            )
            assert step <= MAX_SPEED_MPS * 0.5 + 2 * 6 * 4
        # It moves along a path rather than jumping about: ten minutes stay within 15 km.
        first, last = sent[0], sent[-1]
        assert (
            metres_between(
                first["latitude"], first["longitude"], last["latitude"], last["longitude"]
            )
            <= MAX_SPEED_MPS * 600
        )
    assert generator.stats.valid == 3600
    assert (generator.stats.duplicates, generator.stats.invalid) == (0, 0)


def test_true_track_never_exceeds_the_speed_limit() -> None:
    generator = TraceGenerator(device_ids=[1], rate=1, seed=3)
    vehicle = generator.vehicles[1]
    for _ in range(5000):
        before = (vehicle.latitude, vehicle.longitude)
        vehicle.advance(seconds=1.0, rng=generator.rng)
        assert 0 <= vehicle.speed <= MAX_SPEED_MPS
        moved = metres_between(*before, vehicle.latitude, vehicle.longitude)
        assert moved <= MAX_SPEED_MPS * 1.0 * 1.001  # flat-earth step vs. great circle
        assert -90 <= vehicle.latitude <= 90
        assert -180 <= vehicle.longitude <= 180


def test_configured_duplicate_and_invalid_fractions() -> None:
    generator, points = generate(duplicate_fraction=0.1, invalid_fraction=0.05)

    everything = [point for sent in points.values() for point in sent]
    total = len(everything)
    invalid = [point for point in everything if not is_valid(point)]
    valid_keys = [
        (point["device_id"], point["timestamp"]) for point in everything if is_valid(point)
    ]
    duplicates = len(valid_keys) - len(set(valid_keys))

    assert total == generator.stats.total
    assert len(invalid) == generator.stats.invalid
    assert duplicates == generator.stats.duplicates
    assert len(set(valid_keys)) == generator.stats.valid
    assert math.isclose(duplicates / total, 0.1, abs_tol=0.02)
    assert math.isclose(len(invalid) / total, 0.05, abs_tol=0.02)
    # A duplicate repeats an earlier point exactly, so the server has nothing new to keep.
    by_key: dict[tuple[int, str], dict[str, Any]] = {}
    for point in everything:
        if is_valid(point):
            key = (point["device_id"], point["timestamp"])
            assert by_key.setdefault(key, point) == point


def test_per_minute_reference_counts_distinct_valid_points() -> None:
    generator, points = generate(duplicate_fraction=0.1, invalid_fraction=0.05)

    for device_id, sent in points.items():
        distinct = {point["timestamp"] for point in sent if is_valid(point)}
        expected = Counter(parse(stamp).replace(second=0, microsecond=0) for stamp in distinct)
        assert generator.stats.per_minute[device_id] == expected


def test_fractions_must_leave_room_for_valid_points() -> None:
    with pytest.raises(ValueError, match="less than 1"):
        TraceGenerator(device_ids=[1], rate=1, duplicate_fraction=0.6, invalid_fraction=0.4)


# -- end to end, over real HTTP ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_simulator_run_against_live_server_matches_summary(
    live_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command(
        "simulate_telemetry",
        "--devices=3",
        "--rate=4",
        "--duration=3",
        "--batch-size=5",
        # The test database on SQLite is one shared in-memory connection: concurrent
        # writes there fail with "table is locked" (and would be retried), so send serially.
        f"--concurrency={3 if is_postgresql() else 1}",
        "--duplicate-fraction=0.1",
        "--invalid-fraction=0.1",
        "--seed=11",
        f"--url={live_server.url}",
        "--issue-devices",
    )

    output = capsys.readouterr().out
    assert output.count("reported: match") == 3
    assert "summary check: match" in output
    assert "MISMATCH" not in output
    assert TelemetryPoint.objects.count() > 0


@pytest.mark.django_db(transaction=True)
def test_simulator_reads_tokens_from_a_file_and_skips_the_check_without_staff(
    live_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device, token = make_device()
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(f"# device id, token\n{device.pk} {token}\n")

    call_command(
        "simulate_telemetry",
        "--devices=1",
        "--rate=5",
        "--duration=2",
        "--batch-size=4",
        "--duplicate-fraction=0",
        "--invalid-fraction=0",
        "--seed=5",
        f"--url={live_server.url}",
        f"--token-file={token_file}",
    )

    output = capsys.readouterr().out
    assert "summary check skipped" in output
    assert "rejected 0" in output
    assert TelemetryPoint.objects.filter(device_id=device.pk).count() == 10


@pytest.mark.django_db(transaction=True)
def test_without_the_summary_check_issuing_devices_makes_no_staff_account(
    live_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command(
        "simulate_telemetry",
        "--devices=1",
        "--rate=2",
        "--duration=1",
        "--batch-size=2",
        "--concurrency=1",
        "--seed=3",
        f"--url={live_server.url}",
        "--issue-devices",
        "--no-summary-check",
    )

    output = capsys.readouterr().out
    assert "summary check" not in output
    assert not User.objects.filter(username="telemetry-simulator").exists()
    assert not User.objects.filter(is_staff=True).exists()
    assert TelemetryPoint.objects.count() > 0


@pytest.mark.django_db
def test_issuing_again_takes_the_same_devices_with_new_tokens() -> None:
    first, _ = issue_devices(3, staff_token=False)
    second, _ = issue_devices(3, staff_token=False)

    assert list(second) == list(first)
    assert all(second[device] != first[device] for device in first)
    assert CourierDevice.objects.count() == 3
    # Each device now answers to its new token only.
    stored = dict(CourierDevice.objects.values_list("pk", "token_hash"))
    assert stored == {device: device_token_hash(token) for device, token in second.items()}


def test_a_rate_below_one_point_per_second_is_kept_on_average() -> None:
    generator = TraceGenerator(
        device_ids=[1], rate=0.25, duplicate_fraction=0, invalid_fraction=0, seed=1
    )

    sent = [
        point
        for second in range(40)
        for point in generator.points_for(1, start=START + timedelta(seconds=second), seconds=1)
    ]

    assert len(sent) == 10
    assert [parse(point["timestamp"]) for point in sent] == [
        START + timedelta(seconds=4 * index + 3) for index in range(10)
    ]
