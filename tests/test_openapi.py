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


# --- the document tells the truth about errors and rules -----------------------------------

ERROR_REF = "#/components/schemas/Error"


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if method in HTTP_METHODS
    ]


def test_the_error_component_is_the_one_error_shape(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]

    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "details"]


def test_every_operation_documents_its_errors_in_the_one_shape(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        errors = {code for code in responses if code.startswith(("4", "5"))}
        assert {"406", "503"} <= errors, (method, path)
        assert "500" not in errors, (method, path)
        for code in errors:
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, (method, path, code)
        if any(parameter["in"] == "path" for parameter in operation.get("parameters", [])):
            assert "404" in errors, (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= errors, (method, path)
        if operation.get("security") and {} not in operation["security"]:
            assert "401" in errors, (method, path)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("post", "/api/auth/login/", "429"),  # sign-in throttles
        ("post", "/api/auth/login/", "401"),  # wrong credentials
        ("post", "/api/auth/logout/", "401"),  # a refresh token that is not valid
        ("post", "/api/cart/items/", "429"),  # the per-user write limit
        ("post", "/api/orders/", "422"),  # Idempotency-Key reused
        ("post", "/api/orders/", "409"),  # Idempotency-Key still in progress
        ("delete", "/api/products/{id}/", "403"),  # staff only
        ("get", "/api/telemetry/summary/", "404"),  # unknown device
    ],
)
def test_specific_error_responses_are_documented(
    document: dict[str, Any], method: str, path: str, status: str
) -> None:
    assert status in document["paths"][path][method]["responses"]


def test_reads_anyone_may_make_document_no_403_or_429(document: dict[str, Any]) -> None:
    responses = document["paths"]["/api/search/"]["get"]["responses"]

    assert "403" not in responses
    assert "429" not in responses


def test_order_history_is_documented_as_the_plain_list_it_is(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/orders/{id}/history/"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    names = {parameter["name"] for parameter in operation["parameters"]}

    assert schema == {"type": "array", "items": {"$ref": "#/components/schemas/OrderStatusChange"}}
    assert names == {"id"}


def test_order_history_answers_a_plain_list(api_client: Any) -> None:
    from emporium.core.tests.factories import UserFactory
    from emporium.orders.models import Order

    user = UserFactory()
    order = Order.objects.create(user=user, total_amount=0)
    api_client.force_authenticate(user)

    response = api_client.get(f"/api/orders/{order.pk}/history/")

    assert response.status_code == 200
    assert isinstance(response.json(), list)


def test_page_size_bound_is_documented_and_enforced(document: dict[str, Any]) -> None:
    page_size = next(
        parameter
        for parameter in document["paths"]["/api/categories/"]["get"]["parameters"]
        if parameter["name"] == "page_size"
    )
    assert page_size["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}

    response = Client().get("/api/categories/", {"page_size": 101})

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"page_size": ["101"]}


def test_idempotency_key_rule_is_the_declared_pattern(document: dict[str, Any]) -> None:
    from emporium.core.idempotency import KEY_PATTERN

    for path in ("/api/orders/", "/api/orders/{order_pk}/payments/"):
        header = next(
            parameter
            for parameter in document["paths"][path]["post"]["parameters"]
            if parameter["name"] == "Idempotency-Key"
        )
        assert header["schema"]["pattern"] == KEY_PATTERN


@pytest.mark.parametrize("path", ["/api/products/", "/api/search/"])
def test_price_bounds_declare_the_rule_they_enforce(document: dict[str, Any], path: str) -> None:
    from emporium.core.query_fields import AMOUNT_PATTERN

    parameters = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
    for name in ("min_price", "max_price"):
        declared, empty = parameters[name]["schema"]["anyOf"]
        assert declared["pattern"] == AMOUNT_PATTERN
        assert empty == {"type": "string", "maxLength": 0}  # DRF reads "" as not given
        assert parameters[name]["allowEmptyValue"] is True


@pytest.mark.parametrize("value", ["-1", "-0", "1e3", "+5", " 5", "\u0665", "1.234"])
@pytest.mark.parametrize("path", ["/api/products/", "/api/search/"])
def test_a_price_bound_outside_the_declared_pattern_is_400(path: str, value: str) -> None:
    response = Client().get(path, {"q": "lamp", "max_price": value})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "max_price" in response.json()["error"]["details"]


def test_telemetry_summary_documents_from_before_to(document: dict[str, Any]) -> None:
    parameters = {
        p["name"]: p for p in document["paths"]["/api/telemetry/summary/"]["get"]["parameters"]
    }

    assert "earlier than 'to'" in parameters["from"]["description"]
    assert parameters["device_id"]["required"] is True


def test_created_objects_link_to_their_operations(document: dict[str, Any]) -> None:
    links = document["paths"]["/api/cart/items/"]["post"]["responses"]["201"]["links"]

    assert links["cart_items_destroy"]["parameters"] == {"id": "$response.body#/id"}
    review_links = document["paths"]["/api/products/{product_pk}/reviews/"]["post"]["responses"][
        "201"
    ]["links"]
    assert review_links["products_reviews_retrieve"]["parameters"] == {
        "product_pk": "$request.path.product_pk",
        "id": "$response.body#/id",
    }


# --- the fuzz runner's bookkeeping ----------------------------------------------------------


def test_every_accepted_fuzz_failure_has_a_reason() -> None:
    from tests.fuzz.run_schemathesis import accepted_list

    entries = accepted_list()

    assert entries
    assert all(len(entry.reason.split()) >= 10 for entry in entries)


def test_the_fuzz_runner_reads_each_case_of_a_junit_report(tmp_path: Any) -> None:
    from tests.fuzz.run_schemathesis import Accepted, failures_of

    message = (
        "1. Test Case ID: AAAAAA&#10;&#10;- Server error&#10;&#10;[500] Internal Server Error:"
        "&#10;&#10;2. Test Case ID: BBBBBB&#10;&#10;- Undocumented HTTP status code&#10;"
        "&#10;[400] Bad Request:&#10;&#10;Reproduce with: &#10;&#10;    curl http://x/"
    ).replace("&#10;", "\n")
    report = tmp_path / "report.xml"
    report.write_text(
        '<?xml version="1.0" ?>\n<testsuites><testsuite>'
        '<testcase name="GET /api/orders/"><failure type="failure" message="'
        + message.replace('"', "&quot;")
        + '"/></testcase><testcase name="GET /api/cart/"/></testsuite></testsuites>\n'
    )

    tested, found = failures_of(report, "customer")

    assert tested == 2
    assert [(f.operation, f.title) for f in found] == [
        ("GET /api/orders/", "Server error"),
        ("GET /api/orders/", "Undocumented HTTP status code"),
    ]
    bare_400 = Accepted(".*", "Undocumented", r"\[400\] Bad Request:\s*Reproduce with", "r")
    assert [bare_400.covers(f) for f in found] == [False, True]
