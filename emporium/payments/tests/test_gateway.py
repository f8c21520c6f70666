"""The HTTP gateway and its circuit breaker, against the real simulated provider.

The simulator's ledger counts every charge request that reached it, which is
how these tests tell "failed fast at the breaker" from "asked the provider".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pybreaker
import pytest
import redis

from emporium.payments.gateway import (
    ChargeResult,
    HttpPaymentGateway,
    PaymentDeclined,
    ProviderRejected,
    ProviderUnavailable,
    default_gateway,
    provider_breaker,
)
from tests.support.processes import ProviderProcess, TcpProxy

FAIL_MAX = 3
RESET_SECONDS = 2  # Redis keeps the opening time in whole seconds: 1 s could end at once
TIMEOUT_SECONDS = 0.3
BREAKER_NAMESPACE = "emporium:payment-provider"


GOOD_CARD = "tok_visa"


def charge(gateway: HttpPaymentGateway, n: int, token: str = GOOD_CARD) -> ChargeResult:
    return gateway.charge(
        idempotency_key=f"gateway-test-{n}",
        amount=Decimal("12.50"),
        currency="EUR",
        token=token,
        reference=f"gateway-test-{n}",
    )


def requests_seen(provider: ProviderProcess) -> int:
    return int(provider.ledger()["requests_seen"])


def assert_fails_fast(gateway: HttpPaymentGateway, provider: ProviderProcess, n: int) -> None:
    """Refused at the breaker: the provider never sees the request, no timeout is waited."""
    seen = requests_seen(provider)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="circuit open") as refused:
        charge(gateway, n)
    # A call that reached the hanging provider would take the full timeout; this
    # bounds behaviour (no network wait at all), it is not a speed measurement.
    assert time.monotonic() - started < TIMEOUT_SECONDS
    assert isinstance(refused.value.__cause__, pybreaker.CircuitBreakerError)
    assert requests_seen(provider) == seen


@pytest.fixture
def breaker_settings(payment_provider: ProviderProcess, settings: Any) -> Iterator[None]:
    settings.PAYMENT_BREAKER_FAIL_MAX = FAIL_MAX
    settings.PAYMENT_BREAKER_RESET_SECONDS = RESET_SECONDS
    settings.PAYMENT_PROVIDER_TIMEOUT_SECONDS = TIMEOUT_SECONDS
    provider_breaker.cache_clear()
    yield
    provider_breaker().close()
    provider_breaker.cache_clear()


@pytest.fixture
def hanging_provider(payment_provider: ProviderProcess) -> ProviderProcess:
    """Answers 503 only after longer than the gateway waits: every call times out."""
    payment_provider.control(outage=True, latency_ms=1500)
    return payment_provider


@pytest.mark.usefixtures("breaker_settings")
def test_charge_returns_the_providers_charge(payment_provider: ProviderProcess) -> None:
    result = charge(default_gateway(), 1)

    [recorded] = payment_provider.ledger()["charges"]
    assert result == ChargeResult(reference=recorded["id"], status="succeeded")
    assert recorded["amount"] == "12.50"
    assert recorded["reference"] == "gateway-test-1"


@pytest.mark.usefixtures("breaker_settings")
def test_same_idempotency_key_gets_the_same_charge(payment_provider: ProviderProcess) -> None:
    gateway = default_gateway()

    first = charge(gateway, 7)
    second = charge(gateway, 7)

    assert second == first
    assert len(payment_provider.ledger()["charges"]) == 1


@pytest.mark.usefixtures("breaker_settings")
def test_decline_is_final_and_names_the_reason(payment_provider: ProviderProcess) -> None:
    with pytest.raises(PaymentDeclined) as declined:
        charge(default_gateway(), 1, token="tok_insufficient_funds")

    assert declined.value.code == "insufficient_funds"
    assert declined.value.reference.startswith("ch_")
    assert payment_provider.ledger()["charges"] == []


@pytest.mark.usefixtures("breaker_settings")
def test_breaker_opens_after_fail_max_and_then_fails_fast(
    hanging_provider: ProviderProcess,
) -> None:
    gateway = default_gateway()
    for n in range(FAIL_MAX - 1):
        with pytest.raises(ProviderUnavailable, match="ReadTimeout"):
            charge(gateway, n)
    with pytest.raises(ProviderUnavailable, match="circuit open"):
        charge(gateway, FAIL_MAX)  # the failure that trips the breaker
    assert requests_seen(hanging_provider) == FAIL_MAX
    assert provider_breaker().current_state == "open"

    for n in range(5):
        assert_fails_fast(gateway, hanging_provider, 100 + n)
    assert requests_seen(hanging_provider) == FAIL_MAX


@pytest.mark.usefixtures("breaker_settings")
def test_breaker_is_shared_by_every_gateway_of_the_process(
    hanging_provider: ProviderProcess,
) -> None:
    for n in range(FAIL_MAX):
        with pytest.raises(ProviderUnavailable):
            charge(default_gateway(), n)

    assert_fails_fast(default_gateway(), hanging_provider, 99)


@pytest.mark.usefixtures("breaker_settings")
def test_breaker_half_opens_after_the_timeout_and_closes_on_success(
    hanging_provider: ProviderProcess,
) -> None:
    gateway = default_gateway()
    for n in range(FAIL_MAX):
        with pytest.raises(ProviderUnavailable):
            charge(gateway, n)
    assert_fails_fast(gateway, hanging_provider, 10)

    # Still down when the reset timeout ends: one trial call, and open again.
    time.sleep(RESET_SECONDS + 0.1)
    with pytest.raises(ProviderUnavailable, match="circuit open"):
        charge(gateway, 11)
    assert requests_seen(hanging_provider) == FAIL_MAX + 1
    assert_fails_fast(gateway, hanging_provider, 12)

    # Back: the next trial call after the timeout goes through and closes the circuit.
    hanging_provider.control(outage=False, latency_ms=0)
    time.sleep(RESET_SECONDS + 0.1)
    result = charge(gateway, 13)

    assert result.status == "succeeded"
    assert provider_breaker().current_state == "closed"
    assert provider_breaker().fail_counter == 0
    assert requests_seen(hanging_provider) == FAIL_MAX + 2
    assert charge(gateway, 14).status == "succeeded"


@pytest.mark.usefixtures("breaker_settings")
def test_breaker_opens_when_the_provider_is_unreachable(
    payment_provider: ProviderProcess, tcp_proxy: Callable[[str, int], TcpProxy], settings: Any
) -> None:
    proxy = tcp_proxy("127.0.0.1", int(payment_provider.url.rsplit(":", 1)[1]))
    settings.PAYMENT_PROVIDER_URL = f"http://{proxy.url_host}"
    gateway = default_gateway()
    assert charge(gateway, 1).status == "succeeded"

    proxy.cut()
    for n in range(FAIL_MAX - 1):
        with pytest.raises(ProviderUnavailable, match="ConnectError"):
            charge(gateway, 10 + n)
    with pytest.raises(ProviderUnavailable, match="circuit open"):
        charge(gateway, 20)
    proxy.restore()
    with pytest.raises(ProviderUnavailable, match="circuit open"):
        charge(gateway, 21)  # reachable again, but the circuit is still open
    assert requests_seen(payment_provider) == 1

    time.sleep(RESET_SECONDS + 0.1)
    assert charge(gateway, 22).status == "succeeded"
    assert provider_breaker().current_state == "closed"
    assert requests_seen(payment_provider) == 2


@pytest.mark.usefixtures("breaker_settings")
def test_declines_and_rejections_do_not_open_the_breaker(
    payment_provider: ProviderProcess,
) -> None:
    gateway = default_gateway()
    for n in range(FAIL_MAX + 2):
        with pytest.raises(PaymentDeclined):
            charge(gateway, n, token="tok_declined")
        with pytest.raises(ProviderRejected, match="404"):
            gateway.refund(
                idempotency_key=f"refund-{n}", charge_reference="ch_unknown", amount=Decimal("1")
            )

    assert provider_breaker().current_state == "closed"
    assert provider_breaker().fail_counter == 0
    assert charge(gateway, 100).status == "succeeded"


@pytest.mark.usefixtures("breaker_settings")
def test_only_consecutive_failures_count(payment_provider: ProviderProcess) -> None:
    gateway = default_gateway()
    payment_provider.control(outage=True)
    for n in range(FAIL_MAX - 1):
        with pytest.raises(ProviderUnavailable, match="503"):
            charge(gateway, n)
    payment_provider.control(outage=False)
    assert charge(gateway, 10).status == "succeeded"
    payment_provider.control(outage=True)
    for n in range(FAIL_MAX - 1):
        with pytest.raises(ProviderUnavailable, match="503"):
            charge(gateway, 20 + n)

    assert provider_breaker().current_state == "closed"
    assert requests_seen(payment_provider) == 2 * (FAIL_MAX - 1) + 1


# -- shared state in Redis -------------------------------------------------------------


@pytest.fixture
def redis_breakers(
    redis_url: str, breaker_settings: None, settings: Any
) -> Iterator[Callable[[], pybreaker.CircuitBreaker]]:
    """Builds independent breakers (as separate processes would) on the real Redis."""
    settings.EMPORIUM_BREAKER_REDIS_URL = redis_url
    client = redis.Redis.from_url(redis_url)
    client.delete(*(client.keys(f"{BREAKER_NAMESPACE}:*") or [b"none"]))
    yield provider_breaker.__wrapped__
    client.delete(*(client.keys(f"{BREAKER_NAMESPACE}:*") or [b"none"]))
    client.close()


def test_breaker_state_is_shared_through_redis(
    redis_url: str,
    redis_breakers: Callable[[], pybreaker.CircuitBreaker],
    hanging_provider: ProviderProcess,
) -> None:
    first = HttpPaymentGateway(
        base_url=hanging_provider.url, timeout=TIMEOUT_SECONDS, breaker=redis_breakers()
    )
    second = HttpPaymentGateway(
        base_url=hanging_provider.url, timeout=TIMEOUT_SECONDS, breaker=redis_breakers()
    )
    assert first.breaker is not second.breaker
    assert isinstance(first.breaker._state_storage, pybreaker.CircuitRedisStorage)

    for n in range(FAIL_MAX):
        with pytest.raises(ProviderUnavailable):
            charge(first, n)

    assert redis.Redis.from_url(redis_url).get(f"{BREAKER_NAMESPACE}:pybreaker:state") == b"open"
    assert second.breaker.current_state == "open"
    assert_fails_fast(second, hanging_provider, 50)
    assert requests_seen(hanging_provider) == FAIL_MAX

    hanging_provider.control(outage=False, latency_ms=0)
    time.sleep(RESET_SECONDS + 0.1)
    assert charge(second, 51).status == "succeeded"

    assert first.breaker.current_state == "closed"
    assert charge(first, 52).status == "succeeded"
    assert requests_seen(hanging_provider) == FAIL_MAX + 2


def test_default_breaker_uses_redis_when_configured(
    redis_url: str, redis_breakers: Callable[[], pybreaker.CircuitBreaker]
) -> None:
    breaker = provider_breaker()

    assert isinstance(breaker._state_storage, pybreaker.CircuitRedisStorage)
    assert breaker.fail_max == FAIL_MAX
    assert breaker.reset_timeout == RESET_SECONDS
    assert provider_breaker() is breaker


def test_default_breaker_is_in_memory_without_redis(breaker_settings: None, settings: Any) -> None:
    settings.EMPORIUM_BREAKER_REDIS_URL = None
    provider_breaker.cache_clear()

    assert isinstance(provider_breaker()._state_storage, pybreaker.CircuitMemoryStorage)
