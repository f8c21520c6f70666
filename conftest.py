"""Suite-wide fixtures and the check that required servers are really there.

With EMPORIUM_REQUIRE_SERVICES=1 the run stops before any test when
DATABASE_URL, REDIS_URL or BROKER_URL is unset or its server does not answer:
a missing server is a failure, never a quiet skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.support.processes"]

REQUIRE_SERVICES = os.environ.get("EMPORIUM_REQUIRE_SERVICES") == "1"
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "BROKER_URL")


def _probe(variable: str, url: str) -> str | None:
    """Returns why the server behind ``url`` is unusable, or None when it answers."""
    try:
        if variable == "DATABASE_URL":
            import environ
            import psycopg

            config = environ.Env.db_url_config(url)
            with psycopg.connect(
                host=config["HOST"] or None,
                port=config["PORT"] or None,
                user=config["USER"] or None,
                password=config["PASSWORD"] or None,
                dbname="postgres",
                connect_timeout=3,
            ) as connection:
                connection.execute("SELECT 1")
        elif variable == "REDIS_URL":
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=3) as connection:
                connection.ensure_connection(max_retries=1)
    except Exception as error:  # any failure to talk to it counts as missing
        return f"{type(error).__name__}: {error}"
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    if not REQUIRE_SERVICES:
        return
    problems = []
    for variable in SERVICE_VARIABLES:
        url = os.environ.get(variable)
        if not url:
            problems.append(f"{variable} is not set")
            continue
        reason = _probe(variable, url)
        if reason:
            problems.append(f"{variable} does not answer ({reason})")
    if problems:
        pytest.exit(
            "EMPORIUM_REQUIRE_SERVICES=1 but: " + "; ".join(problems),
            returncode=pytest.ExitCode.TESTS_FAILED,
        )


def require_service(variable: str) -> str:
    """The URL of a configured server; skips (or fails, when required) without one."""
    url = os.environ.get(variable)
    if not url:
        if REQUIRE_SERVICES:
            pytest.fail(f"{variable} is required but not set")
        pytest.skip(f"{variable} is not set; this test needs the real server")
    return url


@pytest.fixture
def redis_url() -> str:
    return require_service("REDIS_URL")


@pytest.fixture
def broker_url() -> str:
    return require_service("BROKER_URL")


@pytest.fixture
def database_url() -> str:
    return require_service("DATABASE_URL")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Throttle counters and cached pages must not leak from one test to the next."""
    from django.core.cache import caches

    from emporium.accounts import access, authentication
    from emporium.core.cache import local_state_reset

    def clear() -> None:
        for alias in caches.settings:
            caches[alias].clear()
        local_state_reset()
        access.local_state_reset()
        authentication.verified_tokens_reset()

    clear()
    yield
    clear()


@pytest.fixture
def api_client():  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    return APIClient()
