"""Every kind of error, over HTTP, leaves as {"error": {"code", "message", "details"}}.

A few tests mount throwaway views next to the project's URLs (this module is
their urlconf, with the project's error handlers) to reach the crash paths.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from config import urls as project_urls
from emporium.accounts.models import User
from emporium.catalog.models import Category
from emporium.core.errors import Conflict
from emporium.core.tests.factories import CategoryFactory, StaffFactory, UserFactory, client_for

ERROR_URLCONF = __name__


class ExplodingView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    def get(self, request: Request, kind: str) -> Response:
        if kind == "runtime":
            raise RuntimeError("secret internals")
        if kind == "conflict":
            raise Conflict("Already shipped.", details={"order": [7]}, code="already_shipped")
        if kind == "django-validation":
            raise DjangoValidationError({"quantity": ["Too many."]})
        if kind == "integrity":
            raise IntegrityError("duplicate key")
        return Response({"ok": True})


def exploding_django_view(request: HttpRequest, kind: str) -> HttpResponse:
    if kind == "runtime":
        raise RuntimeError("secret internals")
    if kind == "permission":
        raise DjangoPermissionDenied("hidden")
    if kind == "suspicious":
        raise SuspiciousOperation("hidden")
    return HttpResponse("ok")


urlpatterns = [
    path("api/test-errors/<str:kind>/", ExplodingView.as_view()),
    path("plain-errors/<str:kind>/", exploding_django_view),
    *project_urls.urlpatterns,
]
handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500


def assert_error(response: Any, status: int, code: str, message: str, details: Any = None) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {"code": code, "message": message, "details": details if details else {}}
    }


# --- 400 ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_validation_error_is_400(api_client: APIClient) -> None:
    response = api_client.post(
        "/api/auth/register/", {"username": "alice", "email": "x"}, format="json"
    )

    assert_error(
        response,
        400,
        "validation_error",
        "The request contains invalid data.",
        {"email": ["Enter a valid email address."], "password": ["This field is required."]},
    )
    assert User.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/auth/register/", "/api/auth/login/", "/api/auth/logout/"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"username": ',
            "JSON parse error - Expecting value: line 1 column 14 (char 13)",
        ),
        (
            "{bad}",
            "JSON parse error - Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
    ],
)
def test_malformed_json_is_400_malformed_request(
    api_client: APIClient, url: str, body: str, message: str
) -> None:
    response = api_client.post(url, data=body, content_type="application/json")

    assert_error(response, 400, "malformed_request", message)
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_malformed_json_to_an_authenticated_endpoint_is_400() -> None:
    user = UserFactory(first_name="Alice")

    response = client_for(user).patch(
        "/api/auth/me/", data="[1, 2", content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert User.objects.get(pk=user.pk).first_name == "Alice"


# --- 401 / 403 ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_not_authenticated_is_401(api_client: APIClient) -> None:
    response = api_client.get("/api/auth/me/")

    assert_error(
        response, 401, "not_authenticated", "Authentication credentials were not provided."
    )


@pytest.mark.django_db
def test_permission_denied_is_403() -> None:
    customer = UserFactory()

    response = client_for(customer).post("/api/categories/", {"name": "Sneaky"}, format="json")

    assert_error(
        response, 403, "permission_denied", "You do not have permission to perform this action."
    )
    assert Category.objects.count() == 0


# --- 404 / 405 / 406 / 415 ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/api/nope/",
        "/api/products/abc/",
        "/api/products/999999/",
        "/api/categories/1.5/",
        "/api/users/-1/",
        "/nowhere-at-all/",
    ],
)
def test_not_found_is_404(api_client: APIClient, url: str) -> None:
    response = api_client.get(url)

    assert_error(response, 404, "not_found", "Not found.")


@pytest.mark.django_db
def test_a_row_that_does_not_exist_is_404() -> None:
    category = CategoryFactory()

    response = APIClient().get(f"/api/categories/{category.pk + 1}/")

    assert_error(response, 404, "not_found", "Not found.")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("get", "/api/auth/login/", "GET"),
        ("put", "/api/auth/register/", "PUT"),
        ("delete", "/api/auth/me/", "DELETE"),
        ("put", "/api/products/1/", "PUT"),
    ],
)
def test_method_not_allowed_is_405(method: str, url: str, allowed: str) -> None:
    client = client_for(StaffFactory())  # staff pass every permission check first

    response = getattr(client, method)(url, {}, format="json")

    assert_error(response, 405, "method_not_allowed", f'Method "{allowed}" not allowed.')


@pytest.mark.django_db
def test_an_unsatisfiable_accept_header_is_406(api_client: APIClient) -> None:
    response = api_client.get("/api/products/", HTTP_ACCEPT="application/xml")

    assert_error(response, 406, "not_acceptable", "Could not satisfy the request Accept header.")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "application/x-www-form-urlencoded",
            "username=alice&email=alice%40example.com&password=violet-anchor-meadow-42",
        ),
        ("text/plain", '{"username": "alice"}'),
        ("multipart/form-data; boundary=xyz", "--xyz--"),
    ],
)
@pytest.mark.parametrize("url", ["/api/auth/register/", "/api/auth/login/"])
def test_a_body_that_is_not_json_is_415(
    api_client: APIClient, content_type: str, body: str, url: str
) -> None:
    response = api_client.post(url, data=body, content_type=content_type)

    media_type = content_type.split(";")[0] if "multipart" not in content_type else content_type
    assert_error(
        response,
        415,
        "unsupported_media_type",
        f'Unsupported media type "{media_type}" in request.',
    )
    assert User.objects.count() == 0


# --- 413 ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_body_over_the_limit_is_413_and_writes_nothing(settings: Any) -> None:
    settings.EMPORIUM_MAX_REQUEST_BODY_BYTES = 64
    client = APIClient()  # built after the change: the middleware reads the limit at start-up

    response = client.post(
        "/api/auth/register/",
        {
            "username": "alice",
            "email": "alice@example.com",
            "password": "violet-anchor-meadow-42",
        },
        format="json",
    )

    assert_error(
        response,
        413,
        "request_too_large",
        "The request body is too large.",
        {"max_bytes": 64},
    )
    assert User.objects.count() == 0


# --- 500 ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.urls(ERROR_URLCONF)
def test_an_unexpected_exception_in_an_api_view_is_500_internal_error() -> None:
    response = APIClient(raise_request_exception=False).get("/api/test-errors/runtime/")

    assert_error(response, 500, "internal_error", "An unexpected error occurred.")
    assert b"secret internals" not in response.content


@pytest.mark.django_db
@pytest.mark.urls(ERROR_URLCONF)
def test_an_unexpected_exception_outside_drf_is_500_internal_error() -> None:
    response = Client(raise_request_exception=False).get("/plain-errors/runtime/")

    assert_error(response, 500, "internal_error", "An unexpected error occurred.")
    assert b"secret internals" not in response.content


@pytest.mark.django_db
@pytest.mark.urls(ERROR_URLCONF)
@pytest.mark.parametrize(
    ("kind", "status", "code", "message"),
    [
        (
            "permission",
            403,
            "permission_denied",
            "You do not have permission to perform this action.",
        ),
        ("suspicious", 400, "bad_request", "The request could not be processed."),
    ],
)
def test_django_errors_outside_drf_use_the_error_shape(
    kind: str, status: int, code: str, message: str
) -> None:
    response = Client().get(f"/plain-errors/{kind}/")

    assert_error(response, status, code, message)


@pytest.mark.django_db
@pytest.mark.urls(ERROR_URLCONF)
@pytest.mark.parametrize(
    ("kind", "status", "code", "message", "details"),
    [
        ("conflict", 409, "already_shipped", "Already shipped.", {"order": [7]}),
        (
            "django-validation",
            400,
            "validation_error",
            "The request contains invalid data.",
            {"quantity": ["Too many."]},
        ),
        ("integrity", 409, "conflict", "The request conflicts with existing data.", {}),
    ],
)
def test_errors_raised_in_api_views_use_the_error_shape(
    kind: str, status: int, code: str, message: str, details: Any
) -> None:
    response = APIClient().get(f"/api/test-errors/{kind}/")

    assert_error(response, status, code, message, details)


@pytest.mark.django_db
@pytest.mark.urls(ERROR_URLCONF)
def test_the_throwaway_view_answers_normally_without_an_error() -> None:
    response = APIClient().get("/api/test-errors/none/")

    assert response.status_code == 200
    assert response.json() == {"ok": True}
