"""Liveness and readiness, as a load balancer or an orchestrator asks for them.

``/readyz`` probes the database, the cache (Redis), the message broker
(RabbitMQ, when ``BROKER_URL`` is set) and, in a WebSocket server, the realtime
transport. Which of them readiness requires is the setting
``READINESS_REQUIRED`` (environment variable of the same name):

* a failed **required** dependency makes the answer 503 (``not_ready``), with
  ``Retry-After`` and the name of each failed check, so the balancer sends
  traffic elsewhere. By default the database, the cache and the broker are
  required.
* a failed dependency that is **not required** is reported in the body, with
  the overall status ``degraded``, and the answer stays 200. The API keeps
  answering without the cache and the broker (rate limits fail open, catalog
  reads go to the database, events wait in the outbox, sockets are refused with
  1012 until the transport reconnects).

Every instance shares the same Redis and broker, so requiring them takes every
instance out of the balancer together when one of them is lost; a deployment
that would rather serve degraded than not at all sets
``READINESS_REQUIRED=database`` (docs/monitoring.md weighs the two).

Each probe is bounded: the database by the pool's timeout and a statement
timeout, Redis by the cache's socket timeouts (one second), the broker by a
one-second connect timeout, so a probe never hangs on a lost dependency.
Every assessment sets ``emporium_dependency_up`` for the database, the cache
and the broker (when configured), 1 or 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kombu
from django.conf import settings
from django.core.cache import caches
from django.core.checks import CheckMessage, Error, register
from django.db import connection

from emporium.core.db.replicas import replicas_status
from emporium.observability.metrics import DEPENDENCY_UP
from emporium.realtime import transport_healthy

logger = logging.getLogger(__name__)

DATABASE_PROBE_TIMEOUT_MS = 2000
BROKER_PROBE_TIMEOUT_SECONDS = 1.0
# The checks whose outcome is exported as emporium_dependency_up{dependency}.
DEPENDENCIES = frozenset({"database", "cache", "broker"})


@dataclass(frozen=True)
class Check:
    name: str
    probe: Callable[[], None]
    # False where the dependency is not part of this deployment (no broker configured).
    configured: Callable[[], bool] = lambda: True


def _database() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SET statement_timeout = {DATABASE_PROBE_TIMEOUT_MS}")
        cursor.execute("SELECT 1")
        if connection.vendor == "postgresql":
            cursor.execute("RESET statement_timeout")


def _cache() -> None:
    cache = caches["default"]
    cache.set("health:probe", "1", timeout=10)
    if cache.get("health:probe") != "1":
        raise RuntimeError("the cache did not return what was written")


def _broker_url() -> str | None:
    url: str | None = settings.EMPORIUM_EVENTS_BROKER_URL
    return url


def _broker() -> None:
    """An AMQP connection opened (handshake and login) and closed, once, within the timeout."""
    url = _broker_url()
    if url is None:  # not configured: CHECKS never asks
        return
    with kombu.Connection(url, connect_timeout=BROKER_PROBE_TIMEOUT_SECONDS) as broker:
        broker.ensure_connection(max_retries=0)  # one attempt: no retry, no backoff


def _realtime() -> None:
    if not transport_healthy():
        raise RuntimeError("the realtime transport is reconnecting to Redis")


CHECKS: tuple[Check, ...] = (
    Check("database", probe=_database),
    Check("cache", probe=_cache),
    Check("broker", probe=_broker, configured=lambda: _broker_url() is not None),
    Check("realtime", probe=_realtime),
)


@register()
def readiness_required_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``READINESS_REQUIRED`` names only checks that exist: a typo never goes unnoticed."""
    known = {check.name for check in CHECKS}
    unknown = sorted(set(settings.READINESS_REQUIRED) - known)
    if not unknown:
        return []
    return [
        Error(
            f"READINESS_REQUIRED names {', '.join(unknown)}, which readiness does not check.",
            hint=f"Choose among {', '.join(sorted(known))}.",
            id="emporium.E002",
        )
    ]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    status: str  # "ready", "degraded" or "not_ready"
    checks: dict[str, str]  # name -> "ok" or "failed: <exception type>"
    # Read replicas' status and lag: information only. A lost or lagging replica
    # never fails readiness: the router sends its reads to the primary.
    replicas: dict[str, dict[str, object]] = field(default_factory=dict)


def readiness_assess() -> Readiness:
    """Runs every check once; a failed required check makes the process not ready."""
    required: frozenset[str] = settings.READINESS_REQUIRED
    results: dict[str, str] = {}
    ready = True
    degraded = False
    for check in CHECKS:
        if not check.configured():
            continue
        try:
            check.probe()
        except Exception as error:  # any failure of a probe, whatever the client library
            # The exception's type only: a message may carry a host name or a DSN.
            results[check.name] = f"failed: {type(error).__name__}"
            logger.warning("readiness check %s failed: %s", check.name, type(error).__name__)
            if check.name in required:
                ready = False
            else:
                degraded = True
        else:
            results[check.name] = "ok"
        if check.name in DEPENDENCIES:
            DEPENDENCY_UP.labels(check.name).set(1 if results[check.name] == "ok" else 0)
    status = "not_ready" if not ready else ("degraded" if degraded else "ready")
    return Readiness(ready=ready, status=status, checks=results, replicas=replicas_status())
