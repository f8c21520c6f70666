"""The error hierarchy and the one exception handler, called directly."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core import exceptions as django_exceptions
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework_simplejwt.exceptions import InvalidToken

from emporium.core.errors import (
    ApplicationError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    error_body,
)
from emporium.core.exception_handler import api_exception_handler


def handle(exc: Exception) -> tuple[int, dict[str, Any], Any]:
    response = api_exception_handler(exc, {})
    return response.status_code, response.data, response


# --- the hierarchy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_class", "status", "code", "message"),
    [
        (ApplicationError, 400, "bad_request", "The request could not be processed."),
        (InvalidInput, 400, "validation_error", "The request contains invalid data."),
        (NotFound, 404, "not_found", "Not found."),
        (
            PermissionDenied,
            403,
            "permission_denied",
            "You do not have permission to perform this action.",
        ),
        (
            Conflict,
            409,
            "conflict",
            "The request conflicts with the current state of the resource.",
        ),
    ],
)
def test_each_error_class_has_its_status_code_and_default_message(
    error_class: type[ApplicationError], status: int, code: str, message: str
) -> None:
    error = error_class()

    assert (error.status_code, error.code, error.message, error.details) == (
        status,
        code,
        message,
        {},
    )
    assert str(error) == message


def test_an_error_takes_its_own_message_details_and_code() -> None:
    error = Conflict("Stock ran out.", details={"sku": ["A-1"]}, code="out_of_stock")

    assert (error.status_code, error.code, error.message, error.details) == (
        409,
        "out_of_stock",
        "Stock ran out.",
        {"sku": ["A-1"]},
    )
    # the code override stays on the instance
    assert Conflict().code == "conflict"


def test_error_body_has_the_one_shape() -> None:
    assert error_body("x", "Y.") == {"error": {"code": "x", "message": "Y.", "details": {}}}
    assert error_body("x", "Y.", {"a": [1]}) == {
        "error": {"code": "x", "message": "Y.", "details": {"a": [1]}}
    }


# --- the handler ------------------------------------------------------------------------


def test_application_errors_keep_their_status_code_message_and_details() -> None:
    class OutOfStock(Conflict):
        code = "out_of_stock"

    status, body, _ = handle(OutOfStock("Not enough stock.", details={"available": 2}))

    assert status == 409
    assert body == {
        "error": {
            "code": "out_of_stock",
            "message": "Not enough stock.",
            "details": {"available": 2},
        }
    }


@pytest.mark.parametrize(
    ("exc", "status", "code", "message", "details"),
    [
        (
            drf_exceptions.ValidationError({"name": ["Required."]}),
            400,
            "validation_error",
            "The request contains invalid data.",
            {"name": ["Required."]},
        ),
        (
            drf_exceptions.ValidationError(["Whole thing is wrong."]),
            400,
            "validation_error",
            "The request contains invalid data.",
            {"non_field_errors": ["Whole thing is wrong."]},
        ),
        (
            drf_exceptions.ParseError("JSON parse error - bad"),
            400,
            "malformed_request",
            "JSON parse error - bad",
            {},
        ),
        (
            drf_exceptions.NotAuthenticated(),
            401,
            "not_authenticated",
            "Authentication credentials were not provided.",
            {},
        ),
        (
            drf_exceptions.AuthenticationFailed(),
            401,
            "authentication_failed",
            "Incorrect authentication credentials.",
            {},
        ),
        (
            drf_exceptions.PermissionDenied(),
            403,
            "permission_denied",
            "You do not have permission to perform this action.",
            {},
        ),
        (drf_exceptions.NotFound("No such thing."), 404, "not_found", "Not found.", {}),
        (
            drf_exceptions.MethodNotAllowed("PUT"),
            405,
            "method_not_allowed",
            'Method "PUT" not allowed.',
            {},
        ),
        (
            drf_exceptions.NotAcceptable(),
            406,
            "not_acceptable",
            "Could not satisfy the request Accept header.",
            {},
        ),
        (
            drf_exceptions.UnsupportedMediaType("text/plain"),
            415,
            "unsupported_media_type",
            'Unsupported media type "text/plain" in request.',
            {},
        ),
        (
            drf_exceptions.Throttled(wait=12.2),
            429,
            "throttled",
            "Request was throttled. Expected available in 13 seconds.",
            {},
        ),
        (Http404("hidden detail"), 404, "not_found", "Not found.", {}),
        (
            django_exceptions.PermissionDenied("hidden detail"),
            403,
            "permission_denied",
            "You do not have permission to perform this action.",
            {},
        ),
        (
            django_exceptions.ValidationError({"price": ["Must be positive."]}),
            400,
            "validation_error",
            "The request contains invalid data.",
            {"price": ["Must be positive."]},
        ),
        (
            django_exceptions.ValidationError("Not allowed."),
            400,
            "validation_error",
            "The request contains invalid data.",
            {"non_field_errors": ["Not allowed."]},
        ),
        (
            django_exceptions.RequestDataTooBig("too big"),
            413,
            "request_too_large",
            "The request body is too large.",
            {},
        ),
        (
            ProtectedError("protected", set()),
            409,
            "in_use",
            "This object is still referenced by other records.",
            {},
        ),
        (
            RestrictedError("restricted", set()),
            409,
            "in_use",
            "This object is still referenced by other records.",
            {},
        ),
        (
            IntegrityError("duplicate key value violates unique constraint"),
            409,
            "conflict",
            "The request conflicts with existing data.",
            {},
        ),
        (
            RuntimeError("secret internals"),
            500,
            "internal_error",
            "An unexpected error occurred.",
            {},
        ),
    ],
)
def test_every_exception_becomes_the_one_error_shape(
    exc: Exception, status: int, code: str, message: str, details: Any
) -> None:
    got_status, body, _ = handle(exc)

    assert got_status == status
    assert body == {"error": {"code": code, "message": message, "details": details}}


def test_a_drf_exception_with_an_unlisted_class_keeps_its_own_code() -> None:
    class Gone(drf_exceptions.APIException):
        status_code = 410
        default_detail = "It is gone."
        default_code = "gone"

    status, body, _ = handle(Gone())

    assert status == 410
    assert body == {"error": {"code": "gone", "message": "It is gone.", "details": {}}}


def test_a_drf_exception_with_a_dict_detail_keeps_the_extra_keys_as_details() -> None:
    status, body, _ = handle(InvalidToken({"detail": "Token expired.", "code": "token_not_valid"}))

    assert status == 401
    assert body == {
        "error": {
            "code": "authentication_failed",
            "message": "Token expired.",
            "details": {"code": "token_not_valid"},
        }
    }


def test_throttled_sets_retry_after_rounded_up_and_at_least_one() -> None:
    assert handle(drf_exceptions.Throttled(wait=12.2))[2]["Retry-After"] == "13"
    assert handle(drf_exceptions.Throttled(wait=0.01))[2]["Retry-After"] == "1"
    assert "Retry-After" not in handle(drf_exceptions.Throttled())[2]


def test_authentication_errors_carry_the_www_authenticate_header() -> None:
    exc = drf_exceptions.NotAuthenticated()
    exc.auth_header = 'Bearer realm="api"'  # type: ignore[attr-defined]

    assert handle(exc)[2]["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "WWW-Authenticate" not in handle(drf_exceptions.NotAuthenticated())[2]


def test_an_unexpected_error_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="emporium.core.exception_handler"):
        status, body, _ = handle(RuntimeError("secret internals"))

    assert status == 500
    assert "secret internals" not in str(body)
    records = [r for r in caplog.records if r.name == "emporium.core.exception_handler"]
    assert len(records) == 1
    assert records[0].getMessage() == "unhandled error in API view"
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)


def test_an_integrity_error_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="emporium.core.exception_handler"):
        handle(IntegrityError("dup"))

    assert [r.levelname for r in caplog.records] == ["WARNING"]


# --- a database that cannot be reached is a 503, as one with no connection to give ---------


def _wrapped_as_django_does(error: Exception) -> Exception:
    from django.db import OperationalError as DjangoOperationalError

    wrapped = DjangoOperationalError(*error.args)
    wrapped.__cause__ = error
    return wrapped


def test_a_refused_connection_is_answered_503_with_retry_after() -> None:
    import psycopg

    from emporium.core.errors import database_overloaded
    from tests.support.processes import free_port

    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(host="127.0.0.1", port=free_port(), user="postgres", connect_timeout=2)
    assert database_overloaded(refused.value)
    status, body, response = handle(_wrapped_as_django_does(refused.value))
    assert status == 503
    assert body["error"]["code"] == "service_busy"
    assert response["Retry-After"] == "2"


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_ended_is_answered_503(database_url: str) -> None:
    import psycopg
    from django.db import connection

    from emporium.core.errors import database_overloaded

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    settings_dict = connection.settings_dict
    parameters = {
        "host": settings_dict["HOST"] or "127.0.0.1",
        "port": settings_dict["PORT"] or 5432,
        "user": settings_dict["USER"],
        "password": settings_dict["PASSWORD"],
        "dbname": settings_dict["NAME"],
    }
    with psycopg.connect(**parameters, autocommit=True) as victim:
        pid = victim.info.backend_pid
        with psycopg.connect(**parameters, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(psycopg.OperationalError) as ended:
            victim.execute("SELECT 1")
    assert database_overloaded(ended.value)
    status, body, _ = handle(_wrapped_as_django_does(ended.value))
    assert (status, body["error"]["code"]) == (503, "service_busy")


def test_other_database_errors_stay_500() -> None:
    from emporium.core.errors import database_overloaded

    assert not database_overloaded(RuntimeError("connection refused"))  # not the database's
    assert not database_overloaded(IntegrityError("duplicate key value"))
