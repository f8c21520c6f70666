"""The payment provider, seen through one small interface.

:class:`HttpPaymentGateway` talks to a provider over HTTP with httpx (the repo's
simulator in development and tests). Every call goes through a circuit
breaker whose state lives in Redis in production, so when the provider is
down all workers fail fast together instead of each waiting for timeouts.
Errors are split into final (:class:`PaymentDeclined`) and retryable
(:class:`ProviderUnavailable`, which includes an open circuit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

import httpx
import pybreaker
from django.conf import settings

from emporium.core import correlation
from emporium.observability import domain_metrics

logger = logging.getLogger(__name__)


class PaymentDeclined(Exception):
    """The provider refused the charge; retrying will not change that."""

    def __init__(self, code: str, reference: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.reference = reference


class ProviderUnavailable(Exception):
    """Timeout, connection error, 5xx or an open circuit: worth retrying later."""


class ProviderRejected(Exception):
    """The provider said our request itself was wrong (4xx other than a decline)."""


@dataclass(frozen=True)
class ChargeResult:
    reference: str
    status: str


class PaymentGateway(Protocol):
    def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, token: str, reference: str
    ) -> ChargeResult: ...

    def refund(self, *, idempotency_key: str, charge_reference: str, amount: Decimal) -> str: ...

    def charge_outcome(self, *, idempotency_key: str) -> ChargeResult | None: ...


class BreakerOpenGauge(pybreaker.CircuitBreakerListener):
    """Keeps ``emporium_payment_breaker_open`` at the state this process last saw.

    The state lives in Redis; pybreaker reads it before every call and tells its
    listeners when it differs from what it had cached, so a breaker opened by
    another worker shows here at this process's next call to the provider.
    """

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        domain_metrics.PAYMENT_BREAKER_OPEN.set(1 if new_state.name == pybreaker.STATE_OPEN else 0)


@cache
def provider_breaker() -> pybreaker.CircuitBreaker:
    storage: pybreaker.CircuitBreakerStorage
    redis_url = getattr(settings, "EMPORIUM_BREAKER_REDIS_URL", None)
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace="emporium:payment-provider"
        )
    else:
        storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    return pybreaker.CircuitBreaker(
        fail_max=settings.PAYMENT_BREAKER_FAIL_MAX,
        reset_timeout=settings.PAYMENT_BREAKER_RESET_SECONDS,
        # Only the provider being unwell counts against it, not declines.
        exclude=[PaymentDeclined, ProviderRejected],
        state_storage=storage,
        listeners=[BreakerOpenGauge()],
        name="payment-provider",
    )


def _correlation_headers_add(request: httpx.Request) -> None:
    """Every call names the request id (and trace) that caused it, for the provider's logs."""
    request.headers.update(correlation.http_headers())


class HttpPaymentGateway:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        callback_url: str | None = None,
        timeout: float = 5.0,
        breaker: pybreaker.CircuitBreaker | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            event_hooks={"request": [_correlation_headers_add]},
        )
        self.callback_url = callback_url
        self.breaker = breaker or provider_breaker()

    def _post(self, path: str, *, idempotency_key: str, body: dict[str, Any]) -> httpx.Response:
        def send() -> httpx.Response:
            try:
                response = self.client.post(
                    path, json=body, headers={"Idempotency-Key": idempotency_key}
                )
            except httpx.TransportError as error:  # timeouts, refused connections
                raise ProviderUnavailable(f"{type(error).__name__}: {error}") from error
            if response.status_code >= 500 or response.status_code in (408, 409, 429):
                # 409: the provider is still working on this key; ask again later.
                raise ProviderUnavailable(f"provider answered {response.status_code}")
            return response

        try:
            return self.breaker.call(send)
        except pybreaker.CircuitBreakerError as error:
            raise ProviderUnavailable("circuit open: the provider is failing") from error

    def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, token: str, reference: str
    ) -> ChargeResult:
        body: dict[str, Any] = {
            "amount": str(amount),
            "currency": currency,
            "token": token,
            "reference": reference,
        }
        if self.callback_url:
            body["callback_url"] = self.callback_url
        response = self._post("/v1/charges", idempotency_key=idempotency_key, body=body)
        data = response.json()
        if response.status_code == 402:
            raise PaymentDeclined(
                str(data.get("decline_code", "declined")), str(data.get("id", ""))
            )
        if response.status_code != 201:
            raise ProviderRejected(f"charge answered {response.status_code}: {data}")
        return ChargeResult(reference=str(data["id"]), status=str(data["status"]))

    def refund(self, *, idempotency_key: str, charge_reference: str, amount: Decimal) -> str:
        response = self._post(
            "/v1/refunds",
            idempotency_key=idempotency_key,
            body={"charge_id": charge_reference, "amount": str(amount)},
        )
        if response.status_code != 201:
            raise ProviderRejected(f"refund answered {response.status_code}: {response.text}")
        return str(response.json()["id"])

    def charge_outcome(self, *, idempotency_key: str) -> ChargeResult | None:
        """What became of a charge sent with this key: None if the provider never made it.

        Asking never charges; a decline comes back as :class:`PaymentDeclined`.
        """

        def ask() -> httpx.Response:
            try:
                response = self.client.get(f"/v1/requests/{idempotency_key}")
            except httpx.TransportError as error:
                raise ProviderUnavailable(f"{type(error).__name__}: {error}") from error
            if response.status_code >= 500 or response.status_code in (408, 409, 429):
                raise ProviderUnavailable(f"provider answered {response.status_code}")
            return response

        try:
            response = self.breaker.call(ask)
        except pybreaker.CircuitBreakerError as error:
            raise ProviderUnavailable("circuit open: the provider is failing") from error
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ProviderRejected(f"lookup answered {response.status_code}: {response.text}")
        outcome = response.json()
        data = outcome["response"]
        if outcome["status_code"] == 402:
            raise PaymentDeclined(
                str(data.get("decline_code", "declined")), str(data.get("id", ""))
            )
        if outcome["status_code"] != 201:
            return None
        return ChargeResult(reference=str(data["id"]), status=str(data["status"]))


def default_gateway() -> PaymentGateway:
    return HttpPaymentGateway(
        base_url=settings.PAYMENT_PROVIDER_URL,
        api_key=settings.PAYMENT_PROVIDER_API_KEY,
        callback_url=settings.PAYMENT_CALLBACK_URL,
        timeout=settings.PAYMENT_PROVIDER_TIMEOUT_SECONDS,
    )
