"""The request id and the access log, on Django's path and on the lean gateway's."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from config.wsgi import django_application, lean_gateway
from emporium.carts import services as cart_services
from emporium.catalog.tests.support import product_url
from emporium.core.tests.factories import ProductFactory, UserFactory, client_for
from emporium.observability.operational import OPERATIONAL_PATHS
from emporium.observability.tests.logs import CapturedLogs, logs_captured
from tests.support.wsgi import wsgi_call

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    with logs_captured() as captured:
        yield captured


def test_a_well_formed_incoming_id_is_kept_and_returned(client: Client, logs: CapturedLogs) -> None:
    response = client.get("/api/products/", HTTP_X_REQUEST_ID="edge-7f3a/42")

    assert response["X-Request-ID"] == "edge-7f3a/42"
    [line] = logs.access()
    assert line["request_id"] == "edge-7f3a/42"
    assert line["method"] == "GET"
    assert line["route"] == "api/products/"
    assert line["status"] == 200
    assert line["user_id"] is None
    assert isinstance(line["duration_ms"], float)


@pytest.mark.parametrize(
    "incoming", ["", "x" * 129, "abc def", "abc\nforged=1", "id;drop", "ünïcode"]
)
def test_a_malformed_incoming_id_is_replaced(
    client: Client, logs: CapturedLogs, incoming: str
) -> None:
    response = client.get("/api/products/", HTTP_X_REQUEST_ID=incoming)

    assert GENERATED.fullmatch(response["X-Request-ID"])
    assert [line["request_id"] for line in logs.access()] == [response["X-Request-ID"]]


def test_each_request_without_an_id_gets_its_own(client: Client, logs: CapturedLogs) -> None:
    first = client.get("/api/products/")["X-Request-ID"]
    second = client.get("/api/products/")["X-Request-ID"]

    assert GENERATED.fullmatch(first)
    assert GENERATED.fullmatch(second)
    assert first != second
    assert [line["request_id"] for line in logs.access()] == [first, second]


def test_the_access_line_names_the_signed_in_user_and_the_route_pattern(
    logs: CapturedLogs,
) -> None:
    user = UserFactory()
    response = client_for(user).get("/api/orders/999999/")

    assert response.status_code == 404
    [line] = logs.access()
    assert line["user_id"] == user.pk
    assert line["route"] == "api/orders/<pk>/"
    assert line["status"] == 404
    assert line["request_id"] == response["X-Request-ID"]


@pytest.mark.parametrize("path", sorted(OPERATIONAL_PATHS))
def test_probes_and_scrapes_get_no_access_line(
    client: Client, logs: CapturedLogs, path: str
) -> None:
    # Answered ahead of the request context (emporium.observability.operational).
    response = client.get(path)

    assert response.status_code == 200
    assert logs.access() == []


def test_the_lean_checkout_names_its_user_in_the_access_line(logs: CapturedLogs) -> None:
    user = UserFactory()
    product = ProductFactory(stock_quantity=3)
    cart_services.cart_item_add(user=user, product=product, quantity=1)

    response = client_for(user).post("/api/orders/")

    assert response.status_code == 201
    [line] = logs.access()
    assert (line["user_id"], line["status"], line["route"]) == (user.pk, 201, "api/orders/")


# The gateway ends a request as a server would, closing the database connection:
# it runs outside the test's transaction.
@pytest.mark.django_db(transaction=True)
def test_a_read_the_gateway_answers_is_logged_once_with_its_id(logs: CapturedLogs) -> None:
    product = ProductFactory()
    handed_on: list[str] = []

    def django(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        handed_on.append(environ["PATH_INFO"])
        return django_application(environ, start_response)

    gateway = lean_gateway(django)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": product_url(product.pk),
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "HTTP_X_REQUEST_ID": "from-the-edge-1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
    }

    status, headers, _ = wsgi_call(gateway, environ)

    assert status.startswith("200")
    assert ("X-Request-ID", "from-the-edge-1") in headers
    [line] = logs.access()
    assert line["request_id"] == "from-the-edge-1"
    assert line["route"] == "api/products/<pk>/"
    assert line["status"] == 200
    # On PostgreSQL the gateway answers itself; elsewhere Django does (docs/adr/0020).
    assert handed_on == ([] if connection.vendor == "postgresql" else [product_url(product.pk)])
