"""Request-level protections that must run before any view or parser."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from emporium.core.errors import error_body

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodySizeLimitMiddleware:
    """Answers 413 before reading a body larger than the configured limit.

    DRF's parsers read the raw stream and so bypass DATA_UPLOAD_MAX_MEMORY_SIZE;
    checking Content-Length here covers every parser. A body sent without a
    length (chunked) is cut at the limit by reading at most limit + 1 bytes.

    A path in EMPORIUM_STREAMED_UPLOAD_LIMITS has its own limit instead, and a
    chunked body there is left to its view, which streams it to disk and
    enforces the same limit as it reads.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.limit: int = settings.EMPORIUM_MAX_REQUEST_BODY_BYTES
        self.streamed: dict[str, int] = dict(
            getattr(settings, "EMPORIUM_STREAMED_UPLOAD_LIMITS", None) or {}
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in _BODY_METHODS:
            limit, streamed = self.limit, False
            for prefix, own_limit in self.streamed.items():
                if request.path_info.startswith(prefix):
                    limit, streamed = own_limit, True
            raw_length = request.META.get("CONTENT_LENGTH") or ""
            try:
                length = int(raw_length) if raw_length else None
            except ValueError:
                return JsonResponse(
                    error_body("bad_request", "Content-Length is not a number."), status=400
                )
            if length is not None and length > limit:
                return _too_large(limit)
            if (
                not streamed
                and length is None
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


# The methods the project's views are written for; anything else (TRACE, CONNECT,
# made-up ones) is refused before a view, an authentication or a CSRF check runs.
SERVED_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")


class UnservedMethodMiddleware:
    """Answers 405, in the error shape and with ``Allow``, to a method no view serves.

    DRF authenticates before it looks at the method, so a TRACE used to get a 401
    or 403 on protected routes, and a function view without a method decorator
    would treat it as a GET. ``Allow`` lists what the resolved view answers.
    A view marked ``answers_every_method`` answers them itself (``/metrics``
    answers 404 to anything it does not serve, as if it did not exist).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if request.method in SERVED_METHODS or getattr(view_func, "answers_every_method", False):
            return None
        response = JsonResponse(
            error_body("method_not_allowed", f'Method "{request.method}" not allowed.'),
            status=405,
        )
        response["Allow"] = ", ".join(view_methods(view_func))
        return response


def view_methods(view_func: Callable[..., Any]) -> list[str]:
    """The methods a resolved view answers, in ``SERVED_METHODS`` order.

    A DRF view set names them in its action map, a class-based view by its
    handlers, a function view through ``require_http_methods`` (read from the
    decorator's closure); a function view that declares nothing is taken to be
    a page with a form: GET, HEAD, OPTIONS and POST.
    """
    actions: dict[str, str] | None = getattr(view_func, "actions", None)
    view_class = getattr(view_func, "cls", None) or getattr(view_func, "view_class", None)
    names: set[str]
    if actions is not None:
        names = set(actions) & set(getattr(view_class, "http_method_names", actions))
        names.add("options")
    elif view_class is not None:
        names = {name for name in view_class.http_method_names if hasattr(view_class, name)}
    else:
        names = {method.lower() for method in _declared_methods(view_func)} or {
            "get",
            "options",
            "post",
        }
    if "get" in names:
        names.add("head")
    return [method for method in SERVED_METHODS if method.lower() in names]


def _declared_methods(view_func: Callable[..., Any]) -> list[str]:
    function: Any = view_func
    while function is not None:
        if inspect.isfunction(function):
            declared = inspect.getclosurevars(function).nonlocals.get("request_method_list")
            if declared is not None:
                return list(declared)
        function = getattr(function, "__wrapped__", None)
    return []
