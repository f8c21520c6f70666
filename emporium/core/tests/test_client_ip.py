"""The client-address rule: the peer, unless trusted proxies vouch for a forwarded address."""

from __future__ import annotations

import pytest
from django.http import HttpRequest
from django.test import RequestFactory, override_settings

from emporium.core.client_ip import client_ip


def _request(peer: str, forwarded: str | None = None) -> HttpRequest:
    request = RequestFactory().get("/", REMOTE_ADDR=peer)
    if forwarded is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    return request


def test_without_proxies_the_forwarded_header_is_ignored() -> None:
    assert client_ip(_request("203.0.113.9", "6.6.6.6")) == "203.0.113.9"


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (1, "6.6.6.6, 198.51.100.20", "198.51.100.20"),  # the client's own entry is ignored
        (2, "6.6.6.6, 198.51.100.20, 10.0.0.7", "198.51.100.20"),
        (1, "2001:db8::1", "2001:db8::1"),
        (2, "198.51.100.20", "10.0.0.2"),  # fewer hops than proxies: only the peer is known
        (1, "", "10.0.0.2"),
        (1, "not-an-address", "10.0.0.2"),
    ],
)
def test_behind_trusted_proxies_the_entry_they_wrote_counts(
    proxies: int, forwarded: str, expected: str
) -> None:
    with override_settings(TRUSTED_PROXY_COUNT=proxies):
        assert client_ip(_request("10.0.0.2", forwarded)) == expected
