"""The client's address: the one rule every rate limit, log line and lockout uses.

The app servers never rewrite the socket's peer address from forwarded
headers (``emporium.core.servers``), so ``REMOTE_ADDR`` is the host that
opened the connection. Behind ``TRUSTED_PROXY_COUNT`` reverse proxies (nginx
is one), each appending the address it saw to ``X-Forwarded-For``, the
client is the entry that many places from the right: everything left of it
was written by the client and proves nothing. With the default of 0 the
header is ignored, so a client cannot choose its own address.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings


def client_ip(request: Any) -> str:
    """The address of the client behind ``request`` (a Django or DRF request)."""
    meta = request.META
    peer = str(meta.get("REMOTE_ADDR") or "")
    proxies: int = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return peer
    hops = [hop.strip() for hop in str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) < proxies:
        return peer  # it did not come through every proxy: only the peer is known
    try:
        return str(ipaddress.ip_address(hops[-proxies]))
    except ValueError:  # a proxy would have written an address; this is not one
        return peer
