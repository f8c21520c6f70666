"""Turns every exception raised in an API view into the one error shape."""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core import exceptions as django_exceptions
from django.db import IntegrityError, OperationalError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from emporium.core.errors import (
    ApplicationError,
    ServiceBusy,
    database_overloaded,
    error_body,
    service_busy_headers,
)

logger = logging.getLogger(__name__)

# DRF exception class -> (our code, message). Anything not listed keeps DRF's own code.
_DRF_CODES: list[tuple[type[drf_exceptions.APIException], str, str | None]] = [
    (drf_exceptions.ValidationError, "validation_error", "The request contains invalid data."),
    (drf_exceptions.ParseError, "malformed_request", None),
    (drf_exceptions.NotAuthenticated, "not_authenticated", None),
    (drf_exceptions.AuthenticationFailed, "authentication_failed", None),
    (drf_exceptions.PermissionDenied, "permission_denied", None),
    (drf_exceptions.NotFound, "not_found", "Not found."),
    (drf_exceptions.MethodNotAllowed, "method_not_allowed", None),
    (drf_exceptions.NotAcceptable, "not_acceptable", None),
    (drf_exceptions.UnsupportedMediaType, "unsupported_media_type", None),
    (drf_exceptions.Throttled, "throttled", None),
]


def _message_of(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _message_of(detail[0])
    if isinstance(detail, dict):
        inner = detail.get("detail")
        if inner is not None:
            return _message_of(inner)
        return "The request contains invalid data."
    return str(detail)


def _drf_response(exc: drf_exceptions.APIException) -> Response:
    code = str(exc.default_code)
    message: str | None = None
    for exc_class, our_code, our_message in _DRF_CODES:
        if isinstance(exc, exc_class):
            code, message = our_code, our_message
            break
    details: Any = {}
    if isinstance(exc, drf_exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    elif isinstance(exc.detail, dict):
        # e.g. simplejwt's InvalidToken carries {"detail", "code", "messages"}
        details = {key: value for key, value in exc.detail.items() if key != "detail"}
    response = Response(
        error_body(code, message or _message_of(exc.detail), details), status=exc.status_code
    )
    wait = getattr(exc, "wait", None)
    if isinstance(exc, drf_exceptions.Throttled) and wait is not None:
        response["Retry-After"] = str(max(1, math.ceil(wait)))
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        response["WWW-Authenticate"] = auth_header
    return response


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    set_rollback()
    if isinstance(exc, OperationalError) and database_overloaded(exc):
        logger.warning("database busy, answered 503: %s", exc)
        exc = ServiceBusy()
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(exc.code, exc.message, exc.details),
            status=exc.status_code,
            headers=service_busy_headers() if isinstance(exc, ServiceBusy) else None,
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, django_exceptions.PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    elif isinstance(exc, django_exceptions.ValidationError):
        exc = drf_exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, django_exceptions.RequestDataTooBig):
        return Response(
            error_body("request_too_large", "The request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    elif isinstance(exc, ProtectedError | RestrictedError):
        return Response(
            error_body("in_use", "This object is still referenced by other records."),
            status=status.HTTP_409_CONFLICT,
        )
    elif isinstance(exc, IntegrityError):
        # A constraint caught a race that validation could not see.
        logger.warning("integrity error turned into 409: %s", exc)
        return Response(
            error_body("conflict", "The request conflicts with existing data."),
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, drf_exceptions.APIException):
        return _drf_response(exc)
    logger.exception("unhandled error in API view", exc_info=exc)
    return Response(
        error_body("internal_error", "An unexpected error occurred."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
