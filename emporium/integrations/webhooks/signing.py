"""How a delivery is signed, and the check a receiver makes.

Every request carries ``Emporium-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]``:
``v1`` is the hex HMAC-SHA256 of ``"<t>." + body`` under a subscription secret.
During a rotation's grace period one ``v1`` is sent per secret (the new one
first), so a receiver holding either secret accepts the request.
:func:`signature_verify` is the receiver's side (docs/api.md shows the same
function); the tests' receivers call it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

SIGNATURE_HEADER = "Emporium-Signature"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def signature_of(*, secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(*, secrets: Iterable[str], timestamp: int, body: bytes) -> str:
    parts = [f"t={timestamp}"]
    parts += [
        f"{SIGNATURE_SCHEME}={signature_of(secret=secret, timestamp=timestamp, body=body)}"
        for secret in secrets
    ]
    return ",".join(parts)


def signature_verify(
    *,
    header: str,
    body: bytes,
    secret: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is recent enough."""
    timestamp = None
    signatures = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == SIGNATURE_SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False  # a replayed old request, or a clock far off
    expected = signature_of(secret=secret, timestamp=timestamp, body=body)
    # Constant time, and every signature compared, so timing reveals nothing.
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    return any(matches)
