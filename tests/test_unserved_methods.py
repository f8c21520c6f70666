"""TRACE, CONNECT and made-up methods: 405 with ``Allow``, in the error shape, on every route.

DRF authenticated before it looked at the method, so a TRACE on a protected
route was a 401 (or a 403), and the pages' 405 had an empty body. The API routes
come from the URL conf; the pages outside the API are listed below.
"""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from emporium.core.tests.factories import UserFactory, client_for
from tests.support.routes import Route, api_routes

UNSERVED = ["TRACE", "CONNECT", "PROPFIND", "BREW"]
PAGES = {
    "/": "GET, HEAD",
    "/search/": "GET, HEAD",
    "/products/1/": "GET, HEAD",
    "/dashboard/": "GET, HEAD",
    "/dashboard/login/": "GET, HEAD, OPTIONS, POST, PUT",
    "/admin/login/": "GET, HEAD, OPTIONS, POST",
}


def refused(method: str) -> dict[str, Any]:
    return {
        "error": {
            "code": "method_not_allowed",
            "message": f'Method "{method}" not allowed.',
            "details": {},
        }
    }


@pytest.mark.django_db
@pytest.mark.parametrize("method", UNSERVED)
@pytest.mark.parametrize("route", api_routes(), ids=str)
def test_an_unserved_method_is_405_on_every_api_route(route: Route, method: str) -> None:
    clients = {"anonymous": APIClient(), "customer": client_for(UserFactory())}
    for who, client in clients.items():
        response: Any = client.generic(method, route.path(1))

        assert response.status_code == 405, (who, response.content[:200])
        assert response.json() == refused(method)
        assert response["Allow"] == ", ".join(route.sorted_methods())


@pytest.mark.django_db
@pytest.mark.parametrize("method", UNSERVED)
@pytest.mark.parametrize(("path", "allow"), PAGES.items())
def test_an_unserved_method_is_405_on_the_pages(path: str, allow: str, method: str) -> None:
    response: Any = APIClient().generic(method, path)

    assert response.status_code == 405
    assert response.json() == refused(method)
    assert response["Allow"] == allow


@pytest.mark.django_db
def test_a_served_method_the_route_lacks_is_still_drfs_405() -> None:
    response: Any = client_for(UserFactory()).put("/api/orders/")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "BREW"])
def test_a_real_server_answers_trace_with_405(live_server: Any, method: str) -> None:
    address = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.request(method, "/api/orders/", headers={"Cookie": "sessionid=secret"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD, OPTIONS, POST"
    assert b"secret" not in body
    assert body == (
        b'{"error": {"code": "method_not_allowed", "message": "Method \\"'
        + method.encode()
        + b'\\" not allowed.", "details": {}}}'
    )
