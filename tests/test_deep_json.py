"""Deeply nested JSON bodies: refused with a 400 on every route that takes a body, never a 500.

Python's json and msgspec descend recursively: ten thousand ``[`` (20 KB) used
to end in a RecursionError. Every route of the URL conf that accepts a body is
swept (the list comes from the resolvers, so a new route is covered), as
anonymous, as a customer and as staff; the routes whose bodies are read by
hand (payment webhook, telemetry) get their own correctly authenticated attack.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from emporium.catalog.models import Product
from emporium.core.parsers import JSON_MAX_DEPTH, json_depth_exceeds
from emporium.core.tests.factories import (
    CategoryFactory,
    OrderFactory,
    PaymentFactory,
    StaffFactory,
    UserFactory,
    client_for,
)
from emporium.delivery.tests.support import device_client, make_device
from emporium.orders.models import Order
from emporium.payments.models import Payment
from simulators.payment_provider import SIGNATURE_HEADER, sign
from tests.support.routes import BODY_METHODS, Route, api_routes
from tests.support.world import build_world

LEVELS = 10_000
DEEP_ARRAY = b"[" * LEVELS + b"]" * LEVELS
DEEP_OBJECT = b'{"a":' * LEVELS + b"1" + b"}" * LEVELS
TOO_DEEP = {
    "error": {
        "code": "malformed_request",
        "message": f"The JSON body is nested deeper than {JSON_MAX_DEPTH} levels.",
        "details": {},
    }
}

BODY_ROUTES = [
    (route, method)
    for route in api_routes()
    for method in route.sorted_methods()
    if method in BODY_METHODS
]
SWEEP_ROLES = ("anonymous", "owner", "customer", "admin")


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_the_sweep_sees_the_routes_that_read_bodies() -> None:
    swept = {str(route) for route, _ in BODY_ROUTES}

    assert {
        "/api/auth/register/",
        "/api/auth/refresh/",
        "/api/auth/logout/",
        "/api/payments/webhook/",
        "/api/telemetry/",
        "/api/products/{pk}/",
        "/api/orders/{pk}/cancel/",
    } <= swept


@pytest.fixture
def customer_client() -> APIClient:
    return client_for(UserFactory())


@pytest.fixture
def staff_client() -> APIClient:
    return client_for(StaffFactory())


@pytest.mark.django_db
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize(("route", "method"), BODY_ROUTES, ids=str)
def test_deep_json_is_never_a_server_error(route: Route, method: str, body: bytes) -> None:
    """Ids point at real objects of the owner, so detail routes reach their parser too."""
    world = build_world()
    clients = {role: world.client(role) for role in ("anonymous", "customer", "admin")}
    clients["owner"] = client_for(world.owner)
    for role in SWEEP_ROLES:
        response = clients[role].generic(
            method, world.url(route), body, content_type="application/json"
        )

        assert response.status_code < 500, (role, response.status_code, response.content[:300])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/auth/register/", "/api/auth/login/", "/api/auth/refresh/", "/api/auth/logout/"]
)
def test_anonymous_deep_json_gets_the_depth_error(path: str) -> None:
    response = APIClient().generic("POST", path, DEEP_ARRAY, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == TOO_DEEP


@pytest.mark.django_db
def test_a_customer_creating_an_order_with_deep_json_gets_the_depth_error(
    customer_client: APIClient,
) -> None:
    response = customer_client.generic(
        "POST", "/api/orders/", DEEP_OBJECT, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == TOO_DEEP
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_a_body_at_the_limit_is_parsed_and_one_past_it_is_refused(
    staff_client: APIClient,
) -> None:
    product = {"price": "1.00", "stock_quantity": 1, "category": CategoryFactory().pk}
    at_limit = {**product, "name": "At", "sku": "AT-1", "attributes": nested(JSON_MAX_DEPTH - 1)}
    past_limit = {**product, "name": "Past", "sku": "PAST-1", "attributes": nested(JSON_MAX_DEPTH)}

    accepted = staff_client.post("/api/products/", at_limit, format="json")
    refused = staff_client.post("/api/products/", past_limit, format="json")

    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["attributes"] == at_limit["attributes"]
    assert refused.status_code == 400
    assert refused.json() == TOO_DEEP
    assert Product.objects.filter(sku="PAST-1").exists() is False


@pytest.mark.django_db
def test_a_utf16_body_is_measured_after_decoding(customer_client: APIClient) -> None:
    body = ("[" * LEVELS + "]" * LEVELS).encode("utf-16")

    response = customer_client.generic(
        "POST", "/api/cart/items/", body, content_type="application/json; charset=utf-16"
    )

    assert response.status_code == 400
    assert response.json() == TOO_DEEP


@pytest.mark.django_db
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
def test_a_signed_deep_payment_callback_is_refused(body: bytes, settings: Any) -> None:
    settings.PAYMENT_WEBHOOK_SECRET = "deep-json-secret"
    payment = PaymentFactory(order=OrderFactory())
    header = sign("deep-json-secret", int(time.time()), body)

    response = APIClient().generic(
        "POST",
        "/api/payments/webhook/",
        body,
        content_type="application/json",
        headers={SIGNATURE_HEADER: header},
    )

    assert response.status_code == 400
    assert response.json() == TOO_DEEP
    assert Payment.objects.get(pk=payment.pk).status == "pending"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (DEEP_ARRAY, "application/json"),
        (b"[" + DEEP_OBJECT + b"]", "application/json"),
        (b"[" * LEVELS, "application/json"),
        (DEEP_OBJECT, "application/x-ndjson"),
        (b'{"device_id": 1}\n' + DEEP_ARRAY, "application/x-ndjson"),
    ],
    ids=["array", "object-in-batch", "unclosed", "ndjson", "ndjson-second-line"],
)
def test_a_device_sending_deep_telemetry_is_refused(body: bytes, content_type: str) -> None:
    _, token = make_device()

    response = device_client(token).generic("POST", "/api/telemetry/", body, content_type)

    assert response.status_code == 400
    assert response.json() == TOO_DEEP


# -- the measure itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "deeper"),
    [
        (json.dumps(nested(JSON_MAX_DEPTH)), False),
        (json.dumps(nested(JSON_MAX_DEPTH + 1)), True),
        (json.dumps(["[" * 100, "{" * 100, {"k": "]]]}}}"}]), False),
        (json.dumps(['\\"[[[[' * 20]), False),
        ("[" * (JSON_MAX_DEPTH + 1) + '"\\\\"' + "]" * (JSON_MAX_DEPTH + 1), True),
        ("[" * (JSON_MAX_DEPTH + 1), True),
        ('{"a": [1, 2, {"b": null}], "c": "x"}\n' * 50, False),
        ("", False),
    ],
    ids=[
        "at-limit",
        "past-limit",
        "brackets-in-strings",
        "escaped-quotes",
        "escaped-backslash",
        "unclosed",
        "ndjson",
        "empty",
    ],
)
def test_depth_measure(document: str, deeper: bool) -> None:
    assert json_depth_exceeds(document.encode()) is deeper
