"""Request-level protections that must run before any view or parser."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from emporium.core.errors import error_body

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodySizeLimitMiddleware:
    """Answers 413 before reading a body larger than the configured limit.

    DRF's parsers read the raw stream and so bypass DATA_UPLOAD_MAX_MEMORY_SIZE;
    checking Content-Length here covers every parser. A body sent without a
    length (chunked) is cut at the limit by reading at most limit + 1 bytes.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.limit: int = settings.EMPORIUM_MAX_REQUEST_BODY_BYTES

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in _BODY_METHODS:
            raw_length = request.META.get("CONTENT_LENGTH") or ""
            try:
                length = int(raw_length) if raw_length else None
            except ValueError:
                return JsonResponse(
                    error_body("bad_request", "Content-Length is not a number."), status=400
                )
            if length is not None and length > self.limit:
                return _too_large(self.limit)
            if (
                length is None
                and request.META.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
            ):
                body = request.read(self.limit + 1)
                if len(body) > self.limit:
                    return _too_large(self.limit)
                request._body = body
        return self.get_response(request)


def _too_large(limit: int) -> JsonResponse:
    return JsonResponse(
        error_body(
            "request_too_large",
            "The request body is too large.",
            {"max_bytes": limit},
        ),
        status=413,
    )


class SecurityHeadersMiddleware:
    """Headers Django's SecurityMiddleware does not set."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.process_response(request, self.get_response(request))

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """Also run on its own by ``core.gateway`` for the reads it answers."""
        response.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'",
        )
        response.setdefault("Permissions-Policy", "geolocation=(), camera=(), microphone=()")
        response.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response
