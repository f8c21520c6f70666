"""The body-size limit and the security headers."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory, override_settings
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.core.middleware import BodySizeLimitMiddleware, SecurityHeadersMiddleware
from emporium.core.tests.factories import UserFactory, client_for

LIMIT = 64
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)


def echo_body(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/octet-stream")


def answer_ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def limited(
    limit: int = LIMIT, view: Callable[[HttpRequest], HttpResponse] = echo_body
) -> BodySizeLimitMiddleware:
    with override_settings(EMPORIUM_MAX_REQUEST_BODY_BYTES=limit):
        return BodySizeLimitMiddleware(view)


def chunked_request(body: bytes, method: str = "POST") -> ASGIRequest:
    """A request sent with Transfer-Encoding: chunked and no Content-Length (ASGI keeps it)."""
    scope = {
        "type": "http",
        "method": method,
        "path": "/api/anything/",
        "query_string": b"",
        "headers": [(b"transfer-encoding", b"chunked"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    return ASGIRequest(scope, io.BytesIO(body))


def assert_too_large(response: Any, limit: int = LIMIT) -> None:
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "error": {
            "code": "request_too_large",
            "message": "The request body is too large.",
            "details": {"max_bytes": limit},
        }
    }


# --- the body-size limit, unit ------------------------------------------------------------


def test_the_limit_is_read_from_the_settings_when_built() -> None:
    assert limited(1234).limit == 1234


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_declared_length_over_the_limit_is_refused_before_the_view(method: str) -> None:
    request = RequestFactory().generic(method, "/api/x/", b"x" * (LIMIT + 1), "application/json")

    assert_too_large(limited()(request))


@pytest.mark.parametrize("size", [0, 1, LIMIT])
def test_a_body_up_to_the_limit_passes(size: int) -> None:
    body = b"y" * size
    request = RequestFactory().post("/api/x/", body, content_type="application/json")

    response = limited()(request)

    assert response.status_code == 200
    assert response.content == body


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_safe_methods_are_not_checked(method: str) -> None:
    request = RequestFactory().generic(method, "/api/x/", b"", CONTENT_LENGTH=str(LIMIT * 100))

    response = limited(view=answer_ok)(request)

    assert response.status_code == 200
    assert response.content == b"ok"


@pytest.mark.parametrize("value", ["abc", "12x", "1.5"])
def test_a_content_length_that_is_not_a_number_is_400(value: str) -> None:
    request = RequestFactory().post("/api/x/", b"{}", content_type="application/json")
    request.META["CONTENT_LENGTH"] = value

    response = limited()(request)

    assert response.status_code == 400
    assert json.loads(response.content) == {
        "error": {
            "code": "bad_request",
            "message": "Content-Length is not a number.",
            "details": {},
        }
    }


def test_a_chunked_body_over_the_limit_is_refused() -> None:
    assert_too_large(limited()(chunked_request(b"z" * (LIMIT + 1))))


def test_a_chunked_body_far_over_the_limit_is_not_read_whole() -> None:
    stream = io.BytesIO(b"z" * 10_000)
    request = chunked_request(b"")
    request._stream = stream  # type: ignore[attr-defined]

    assert_too_large(limited()(request))
    assert stream.tell() == LIMIT + 1


@pytest.mark.parametrize("size", [0, LIMIT])
def test_a_chunked_body_up_to_the_limit_reaches_the_view_intact(size: int) -> None:
    body = b"w" * size

    response = limited()(chunked_request(body))

    assert response.status_code == 200
    assert response.content == body


# --- the body-size limit, through the whole stack -----------------------------------------


@pytest.mark.django_db
def test_the_project_limit_answers_413_through_the_stack() -> None:
    with override_settings(EMPORIUM_MAX_REQUEST_BODY_BYTES=LIMIT):
        client = APIClient()
        payload = {"username": "alice", "email": "a@example.com", "password": "p" * LIMIT}
        response = client.post("/api/auth/register/", payload, format="json")

    assert_too_large(response)
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_a_body_exactly_at_the_limit_reaches_the_view() -> None:
    body = json.dumps({"username": "alice", "pad": ""})
    body = json.dumps({"username": "alice", "pad": "x" * (LIMIT - len(body))})
    assert len(body.encode()) == LIMIT

    with override_settings(EMPORIUM_MAX_REQUEST_BODY_BYTES=LIMIT):
        response = APIClient().post(
            "/api/auth/register/", data=body, content_type="application/json"
        )

    assert response.status_code == 400  # the view's own validation, not the limit
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.django_db
def test_the_body_size_limit_applies_to_authenticated_writes() -> None:
    user = UserFactory(first_name="Alice")
    with override_settings(EMPORIUM_MAX_REQUEST_BODY_BYTES=LIMIT):
        client = client_for(user)
        response = client.patch("/api/auth/me/", {"first_name": "B" * LIMIT}, format="json")

    assert_too_large(response)
    assert User.objects.get(pk=user.pk).first_name == "Alice"


# --- security headers ---------------------------------------------------------------------


def assert_security_headers(response: Any) -> None:
    assert response["Content-Security-Policy"] == CSP
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Permissions-Policy"] == "geolocation=(), camera=(), microphone=()"
    assert response["Cross-Origin-Resource-Policy"] == "same-origin"


@pytest.mark.django_db
def test_security_headers_are_on_api_responses() -> None:
    response = Client().get("/api/products/")

    assert response.status_code == 200
    assert_security_headers(response)


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "status"), [("/api/auth/me/", 401), ("/api/nope/", 404)])
def test_security_headers_are_on_error_responses(url: str, status: int) -> None:
    response = Client().get(url)

    assert response.status_code == status
    assert_security_headers(response)


def test_security_headers_do_not_override_a_view_own_policy() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        response = HttpResponse("ok")
        response["Content-Security-Policy"] = "default-src 'none'"
        return response

    response = SecurityHeadersMiddleware(view)(RequestFactory().get("/"))

    assert response["Content-Security-Policy"] == "default-src 'none'"
    assert response["Permissions-Policy"] == "geolocation=(), camera=(), microphone=()"
    assert response["Cross-Origin-Resource-Policy"] == "same-origin"
