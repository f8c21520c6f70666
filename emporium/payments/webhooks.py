"""Verification of the payment provider's signed callbacks.

The provider signs ``"<unix time>." + raw body`` with HMAC-SHA256 and sends
``Provider-Signature: t=<time>,v1=<hex>``. A callback is accepted only when the
signature matches (compared in constant time) and the time is within the
tolerance, so a captured callback cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from emporium.core.errors import ApplicationError, InvalidInput

SIGNATURE_HEADER = "Provider-Signature"


class InvalidSignature(InvalidInput):
    code = "invalid_signature"
    default_message = "The callback signature is missing, malformed or wrong."


class StaleCallback(InvalidInput):
    code = "stale_callback"
    default_message = "The callback is too old (or from the future) to be accepted."


class WebhookNotConfigured(ApplicationError):
    status_code = 503
    code = "webhook_not_configured"
    default_message = "PAYMENT_WEBHOOK_SECRET is not set on this server."


def signature_verify(
    *, header: str | None, body: bytes, secret: str | None, tolerance: int, now: float | None = None
) -> None:
    if not secret:
        raise WebhookNotConfigured()
    if not header:
        raise InvalidSignature()
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, IndexError, ValueError):
        raise InvalidSignature() from None
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", [])):
        raise InvalidSignature()
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        raise StaleCallback()
