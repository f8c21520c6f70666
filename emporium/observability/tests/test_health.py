from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from prometheus_client import REGISTRY

from emporium.observability import health

pytestmark = pytest.mark.django_db


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_live_answers_without_asking_any_dependency(client: Client) -> None:
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "live"}
    assert "no-cache" in response["Cache-Control"]


def test_ready_reports_every_check(client: Client) -> None:
    # The broker is checked where one is configured (BROKER_URL), as in production.
    broker = {"broker": "ok"} if settings.EMPORIUM_EVENTS_BROKER_URL else {}

    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "cache": "ok", **broker, "realtime": "ok"},
    }
    assert sample("emporium_dependency_up", dependency="database") == 1
    assert sample("emporium_dependency_up", dependency="cache") == 1


@pytest.mark.parametrize(
    ("spelled", "old"), [("/healthz", "/health/live"), ("/readyz", "/health/ready")]
)
def test_the_probes_answer_at_the_paths_an_orchestrator_expects(
    client: Client, spelled: str, old: str
) -> None:
    assert client.get(spelled).json() == client.get(old).json()
    assert client.post(spelled).status_code == 405


def test_an_unreachable_broker_answers_fast_and_names_the_broker(client: Client) -> None:
    """Nothing listens on the port: the probe fails at once, and says which dependency failed."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))  # a port of this test's, never listened on
        closed_port = placeholder.getsockname()[1]
        with override_settings(
            EMPORIUM_EVENTS_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed_port}//"
        ):
            started = time.monotonic()
            response = client.get("/readyz")
            elapsed = time.monotonic() - started

    assert elapsed < health.BROKER_PROBE_TIMEOUT_SECONDS + 1
    # The broker is required by default: not ready, and the answer names it.
    assert response.status_code == 503
    checks = response.json()["error"]["details"]["checks"]
    assert checks["broker"].startswith("failed: ")
    assert checks["database"] == "ok"
    assert sample("emporium_dependency_up", dependency="broker") == 0


def _failing(name: str) -> health.Check:
    def probe() -> None:
        raise ConnectionError("secret-host:6379 refused")

    return health.Check(name, probe=probe)


def test_the_database_cache_and_broker_are_required_by_default() -> None:
    assert settings.READINESS_REQUIRED == {"database", "cache", "broker"}


@pytest.mark.parametrize("name", ["cache", "broker"])
def test_a_lost_required_dependency_is_503_naming_it(
    client: Client, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # The probe, not the dependency, is replaced: what is under test is how the
    # view weighs a failure. Real outages are in tests/test_readiness_outages.py.
    monkeypatch.setattr(health, "CHECKS", (*health.CHECKS[:1], _failing(name)))

    response = client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["error"]["details"]["checks"] == {
        "database": "ok",
        name: "failed: ConnectionError",
    }


@override_settings(READINESS_REQUIRED=frozenset({"database"}))
def test_a_failed_check_that_is_not_required_is_degraded_but_ready(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "CHECKS", (*health.CHECKS[:1], _failing("cache")))

    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "cache": "failed: ConnectionError"},
    }


@pytest.mark.parametrize(
    ("required", "errors"),
    [({"database", "cache"}, []), ({"database", "redis"}, ["emporium.E002"])],
)
def test_readiness_required_may_name_only_real_checks(
    required: set[str], errors: list[str]
) -> None:
    with override_settings(READINESS_REQUIRED=frozenset(required)):
        found = health.readiness_required_check()
    assert [error.id for error in found] == errors
    if errors:
        assert "redis" in found[0].msg


def test_a_failed_required_check_is_503_with_retry_after_and_no_detail_leak(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "CHECKS", (_failing("database"), *health.CHECKS[1:]))

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
