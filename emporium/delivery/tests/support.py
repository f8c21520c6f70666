"""Helpers for the delivery tests: devices with tokens, points, batches, snapshots."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient

from emporium.delivery import services
from emporium.delivery.models import CourierDevice, DevicePosition, TelemetryMinute, TelemetryPoint

TELEMETRY_URL = "/api/telemetry/"
SUMMARY_URL = "/api/telemetry/summary/"
LATEST_URL = "/api/telemetry/latest/"


def make_device(name: str = "courier phone") -> tuple[CourierDevice, str]:
    issued = services.device_issue(name=name)
    return issued.device, issued.token


def device_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Device {token}")
    return client


def recent_minute(minutes_ago: int = 30) -> datetime:
    """A whole minute some time ago, well inside the accepted window."""
    return (timezone.now() - timedelta(minutes=minutes_ago)).replace(second=0, microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def point(
    device: CourierDevice | int,
    moment: datetime,
    latitude: float = 52.52,
    longitude: float = 13.405,
    **extra: Any,
) -> dict[str, Any]:
    device_id = device if isinstance(device, int) else device.pk
    return {
        "device_id": device_id,
        "timestamp": stamp(moment),
        "latitude": latitude,
        "longitude": longitude,
        **extra,
    }


# JSON has no infinity; a number too large for a double is how a device could send one.
# Python's json would write Infinity (invalid JSON), so tests put these markers in
# and the helpers below write the literal numbers.
OVERFLOW = "@@overflow@@"
NEGATIVE_OVERFLOW = "@@negative-overflow@@"


def to_json(value: Any) -> str:
    text = json.dumps(value)
    return text.replace(f'"{OVERFLOW}"', "1e999").replace(f'"{NEGATIVE_OVERFLOW}"', "-1e999")


def post_json(client: APIClient, points: list[dict[str, Any]] | Any) -> Response:
    return client.post(TELEMETRY_URL, data=to_json(points), content_type="application/json")


def post_ndjson(client: APIClient, lines: list[dict[str, Any] | str]) -> Response:
    body = "\n".join(line if isinstance(line, str) else to_json(line) for line in lines) + "\n"
    return client.post(TELEMETRY_URL, data=body, content_type="application/x-ndjson")


def stored_points(device: CourierDevice) -> list[tuple[datetime, float, float]]:
    return list(
        TelemetryPoint.objects.filter(device_id=device.pk)
        .order_by("recorded_at")
        .values_list("recorded_at", "latitude", "longitude")
    )


def telemetry_state() -> dict[str, list[tuple[Any, ...]]]:
    """Everything ingestion writes, to assert that a refused batch wrote nothing."""
    return {
        "points": list(
            TelemetryPoint.objects.order_by("device_id", "recorded_at").values_list(
                "device_id", "recorded_at", "latitude", "longitude", "speed"
            )
        ),
        "minutes": list(
            TelemetryMinute.objects.order_by("device_id", "minute").values_list(
                "device_id", "minute", "point_count", "latitude_sum", "distance_m"
            )
        ),
        "positions": list(
            DevicePosition.objects.order_by("device_id").values_list(
                "device_id", "recorded_at", "latitude", "longitude"
            )
        ),
    }


def error_of(response: Response) -> dict[str, Any]:
    """The error object of a response, after checking the one error shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"
