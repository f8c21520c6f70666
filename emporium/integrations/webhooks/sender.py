"""The HTTP side of deliveries: one pooled httpx client and a breaker per endpoint.

The client is shared by every delivery a process sends, so connections to an
endpoint are reused (keep-alive) up to the pool's limits; every request has a
bounded connect and read timeout, follows no redirect and ignores proxy
variables of the environment (a proxy would connect where the address guard
cannot see). Each subscription has its own circuit breaker, kept in Redis
when REDIS_URL is set (as the payment provider's is), so when an endpoint is
down every worker stops calling it together and tries again after
``WEBHOOKS_BREAKER_RESET_SECONDS``.
"""

from __future__ import annotations

import threading
from functools import cache

import httpcore
import httpx
import pybreaker
from django.conf import settings

from emporium.integrations.webhooks.addresses import GuardedNetworkBackend

POOL_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30)
USER_AGENT = "Emporium-Webhooks/1"


class EndpointUnavailable(Exception):
    """Timeout, connection error, 408, 429 or 5xx: the endpoint may answer later."""


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport on a connection pool whose every connection passes the address guard."""

    def __init__(self) -> None:
        super().__init__(trust_env=False)
        # HTTPTransport takes no network backend; the pool it wraps does.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=POOL_LIMITS.max_connections,
            max_keepalive_connections=POOL_LIMITS.max_keepalive_connections,
            keepalive_expiry=POOL_LIMITS.keepalive_expiry,
            network_backend=GuardedNetworkBackend(),
        )


@cache
def delivery_client() -> httpx.Client:
    return httpx.Client(
        transport=GuardedTransport(),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


def request_timeout() -> httpx.Timeout:
    seconds = settings.WEBHOOKS_TIMEOUT_SECONDS
    return httpx.Timeout(seconds, connect=min(seconds, settings.WEBHOOKS_CONNECT_TIMEOUT_SECONDS))


_breakers: dict[tuple[str, int, int], pybreaker.CircuitBreaker] = {}
_breakers_lock = threading.Lock()


@cache
def _breaker_redis(redis_url: str):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)


def endpoint_breaker(subscription_key: str) -> pybreaker.CircuitBreaker:
    """The breaker of one subscription (``subscription_key`` is its row_uuid)."""
    fail_max = settings.WEBHOOKS_BREAKER_FAIL_MAX
    reset_seconds = settings.WEBHOOKS_BREAKER_RESET_SECONDS
    key = (subscription_key, fail_max, reset_seconds)
    with _breakers_lock:
        breaker = _breakers.get(key)
        if breaker is not None:
            return breaker
        storage: pybreaker.CircuitBreakerStorage
        redis_url = getattr(settings, "EMPORIUM_BREAKER_REDIS_URL", None)
        if redis_url:
            storage = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED,
                _breaker_redis(redis_url),
                namespace=f"emporium:webhook:{subscription_key}",
            )
        else:
            storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_seconds,
            # Only the endpoint being unwell counts (the sender raises nothing
            # else through the breaker); a 4xx is an answer, not an outage.
            exclude=[lambda error: not isinstance(error, EndpointUnavailable)],
            state_storage=storage,
            name=f"webhook-{subscription_key}",
        )
        _breakers[key] = breaker
        return breaker
