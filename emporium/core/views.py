"""The home page, and error views for requests no API view answers (unknown URLs, crashes)."""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from emporium.core.errors import ServiceBusy, database_overloaded, error_body, service_busy_headers


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """``/``: a plain page linking the API docs, search, dashboard and admin; no external assets."""
    return render(request, "core/home.html")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(
        error_body("bad_request", "The request could not be processed."), status=400
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(
        error_body("permission_denied", "You do not have permission to perform this action."),
        status=403,
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    """500, or 503 with Retry-After when the database had no connection to give.

    Django calls this while handling the exception, so ``sys.exc_info`` holds
    it; that covers failures outside API views (middleware, admin, pages).
    """
    error = sys.exc_info()[1]
    if error is not None and database_overloaded(error):
        return service_busy_response()
    return JsonResponse(error_body("internal_error", "An unexpected error occurred."), status=500)


def service_busy_response() -> JsonResponse:
    return JsonResponse(
        error_body(ServiceBusy.code, ServiceBusy.default_message),
        status=ServiceBusy.status_code,
        headers=service_busy_headers(),
    )
