from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from emporium.observability import health

pytestmark = pytest.mark.django_db


def test_live_answers_without_asking_any_dependency(client: Client) -> None:
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "live"}
    assert "no-cache" in response["Cache-Control"]


def test_ready_reports_every_check(client: Client) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "cache": "ok", "realtime": "ok"},
    }


def _failing(name: str, required: bool) -> health.Check:
    def probe() -> None:
        raise ConnectionError("secret-host:6379 refused")

    return health.Check(name, required=required, probe=probe)


def test_a_failed_degradable_check_is_degraded_but_ready(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The probe, not the dependency, is replaced: what is under test is how the
    # view weighs a failure. Real outages are in realtime/tests/test_outage.py.
    monkeypatch.setattr(health, "CHECKS", (*health.CHECKS[:1], _failing("cache", False)))

    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "cache": "failed: ConnectionError"},
    }


def test_a_failed_required_check_is_503_with_retry_after_and_no_detail_leak(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "CHECKS", (_failing("database", True), *health.CHECKS[1:]))

    response = client.get("/health/ready")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["details"]["checks"]["database"] == "failed: ConnectionError"
    assert "secret-host" not in response.content.decode()


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_health_answers_other_methods_405_in_the_error_shape(client: Client, method: str) -> None:
    for path in ("/health/live", "/health/ready"):
        response = getattr(client, method)(path)

        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_health_answers_head(client: Client) -> None:
    assert client.head("/health/live").status_code == 200
    assert client.head("/health/ready").status_code == 200
