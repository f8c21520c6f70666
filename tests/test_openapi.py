"""The OpenAPI document describes the whole API and its docs page works offline."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db

EXPECTED_OPERATIONS = {
    "/api/auth/register/": {"post"},
    "/api/auth/login/": {"post"},
    "/api/auth/refresh/": {"post"},
    "/api/auth/logout/": {"post"},
    "/api/auth/me/": {"get"},
    "/api/users/": {"get"},
    "/api/users/{id}/": {"get"},
    "/api/categories/": {"get", "post"},
    "/api/categories/{id}/": {"get"},
    "/api/products/": {"get", "post"},
    "/api/products/{id}/": {"get"},
    "/api/products/{product_pk}/reviews/": {"get", "post"},
    "/api/products/{product_pk}/reviews/{id}/": {"get", "patch", "delete"},
    "/api/cart/": {"get", "delete"},
    "/api/cart/items/": {"get", "post"},
    "/api/cart/items/{id}/": {"get", "patch", "delete"},
    "/api/wishlist/": {"get"},
    "/api/wishlist/items/": {"get", "post"},
    "/api/wishlist/items/{id}/": {"get", "delete"},
    "/api/orders/": {"get", "post"},
    "/api/orders/{id}/": {"get"},
    "/api/orders/{id}/cancel/": {"post"},
    "/api/orders/{id}/ship/": {"post"},
    "/api/orders/{id}/deliver/": {"post"},
    "/api/orders/{id}/history/": {"get"},
    "/api/orders/{order_pk}/payments/": {"post"},
    "/api/payments/": {"get"},
    "/api/payments/{id}/": {"get"},
    "/api/payments/webhook/": {"post"},
    "/api/devices/": {"get", "post"},
    "/api/devices/{id}/revoke/": {"post"},
    "/api/devices/{id}/rotate-token/": {"post"},
    "/api/shipments/": {"get", "post"},
    "/api/shipments/{id}/track/": {"get"},
    "/api/telemetry/": {"post"},
    "/api/telemetry/summary/": {"get"},
    "/api/telemetry/latest/": {"get"},
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ABSOLUTE_URL = re.compile(r"https?://", re.IGNORECASE)


@pytest.fixture(scope="module")
def document(django_db_setup: None, django_db_blocker: Any) -> dict[str, Any]:
    # Built once for the module; django_db_setup makes sure any query hits the test database.
    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def test_schema_is_an_openapi_3_document(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Emporium API"
    assert isinstance(document["components"]["schemas"], dict)


def test_schema_default_format_is_served_without_authentication() -> None:
    response = Client().get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi: 3.")


def test_schema_lists_every_api_path(document: dict[str, Any]) -> None:
    paths = document["paths"]

    assert set(paths) >= set(EXPECTED_OPERATIONS)
    assert all(path.startswith("/api/") for path in paths)


@pytest.mark.parametrize(("path", "methods"), sorted(EXPECTED_OPERATIONS.items()))
def test_schema_path_has_the_expected_operations(
    document: dict[str, Any], path: str, methods: set[str]
) -> None:
    assert methods <= set(document["paths"][path]) & HTTP_METHODS


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/orders/", {"get", "post"}),  # POST is checkout
        ("/api/orders/{id}/", {"get"}),
        ("/api/payments/", {"get"}),
        ("/api/payments/{id}/", {"get"}),
    ],
)
def test_orders_and_payments_change_only_through_workflows_in_the_schema(
    document: dict[str, Any], path: str, methods: set[str]
) -> None:
    assert set(document["paths"][path]) & HTTP_METHODS == methods


def test_order_list_documents_the_keyset_pagination(document: dict[str, Any]) -> None:
    parameters = {
        parameter["name"] for parameter in document["paths"]["/api/orders/"]["get"]["parameters"]
    }

    assert {"cursor", "page_size"} <= parameters


def test_docs_page_loads_only_local_scripts() -> None:
    response = Client().get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert ABSOLUTE_URL.search(page) is None, "the docs page must not load anything from a CDN"
    scripts = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", page)
    stylesheets = re.findall(r"<link[^>]*\bhref=\"([^\"]+)\"", page)
    static_assets = [url for url in scripts + stylesheets if url != "/api/docs/?script="]
    assert scripts
    assert all(url.startswith("/static/") for url in static_assets), static_assets
    # Every /static/ file the page names is really shipped.
    for url in static_assets:
        assert finders.find(url.removeprefix("/static/")) is not None, url


def test_docs_inline_script_is_local_too() -> None:
    page = Client().get("/api/docs/").content.decode()
    assert '<script src="/api/docs/?script="></script>' in page

    script = Client().get("/api/docs/", {"script": ""})

    assert script.status_code == 200
    body = script.content.decode()
    assert "/api/schema/" in body
    assert ABSOLUTE_URL.search(body) is None
