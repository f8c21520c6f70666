"""Which webhook targets may be called: the guard against server-side request forgery.

In production a target must be ``https`` and every address its host resolves
to must be a public one: loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7),
link-local (169.254/16 with the cloud metadata service, fe80::/10), shared,
multicast, reserved and unspecified addresses are refused, IPv4-mapped IPv6
addresses included. The check runs when a subscription is saved and again on
every connection the sender opens (:class:`GuardedNetworkBackend`), on the
very address it connects to, so a name that later resolves elsewhere (DNS
rebinding) reaches nothing private. ``WEBHOOKS_ALLOW_PRIVATE_TARGETS`` and
``WEBHOOKS_REQUIRE_HTTPS`` relax this for the embedded profile and the tests.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL or an address of its host may not be called."""


def private_targets_allowed() -> bool:
    return bool(getattr(settings, "WEBHOOKS_ALLOW_PRIVATE_TARGETS", False))


def address_is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_unspecified
    )


def host_addresses(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an address literal resolves to itself)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise TargetRefused(f"The host {host!r} does not resolve: {error}.") from error
    addresses = []
    for _family, _type, _protocol, _name, sockaddr in found:
        # An IPv6 sockaddr may carry a zone ("fe80::1%eth0"): the address is what precedes it.
        addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
    return addresses


def addresses_check(host: str, addresses: Iterable[IPAddress]) -> None:
    refused = sorted({str(address) for address in addresses if not address_is_public(address)})
    if refused:
        raise TargetRefused(
            f"The host {host!r} resolves to a non-public address ({', '.join(refused)})."
        )


def target_check(url: str) -> None:
    """Refuses a URL that production must not call; resolves its host to check each address."""
    try:
        parts = urlsplit(url)
    except ValueError as error:  # an unclosed "[" of an IPv6 address, for one
        raise TargetRefused(f"The URL is not valid: {error}.") from error
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("The URL must be http or https.")
    if parts.scheme != "https" and getattr(settings, "WEBHOOKS_REQUIRE_HTTPS", True):
        raise TargetRefused("The URL must use https.")
    if parts.username or parts.password:
        raise TargetRefused("The URL must not carry credentials.")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as error:
        raise TargetRefused(f"The URL's port is not valid: {error}.") from error
    if not host:
        raise TargetRefused("The URL has no host.")
    if private_targets_allowed():
        return
    default_port = 443 if parts.scheme == "https" else 80
    addresses_check(host, host_addresses(host, port or default_port))


class GuardedNetworkBackend(httpcore.SyncBackend):
    """Connects only to an address it has just checked, the one the check was made for.

    httpcore hands ``connect_tcp`` the URL's host; this resolves it once,
    refuses the connection if any address is not public, and connects to the
    checked address itself (TLS still verifies the certificate for the name).
    """

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if private_targets_allowed():
            return super().connect_tcp(host, port, timeout, local_address, socket_options)
        addresses = host_addresses(host, port)
        addresses_check(host, addresses)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as error:
                last_error = error
        raise last_error or httpcore.ConnectError(f"No address to connect to for {host}")
