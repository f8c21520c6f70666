"""Each request's id, and its one access-log line.

:class:`RequestContextMiddleware` comes first in ``MIDDLEWARE`` after the probes'
middleware. It takes the
client's ``X-Request-ID`` when well formed (``emporium.core.correlation``),
else makes one, binds it for every line the request logs, returns it in the
response's ``X-Request-ID``, and writes one ``request`` line on the
``emporium.access`` logger when the response leaves: method, route pattern,
status, user id, latency. Probes and scrapes (``operational.OPERATIONAL_PATHS``)
are answered before this middleware runs, so they get no line: they come every
few seconds and say nothing about users.

It is written as a request phase and a response phase so that the lean
gateway (``emporium.core.gateway``) runs it for the reads it answers too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.functional import SimpleLazyObject, empty

from emporium.core import correlation
from emporium.observability.instrumentation import route_of

access_log = structlog.get_logger("emporium.access")

_STARTED = "_emporium_started"


def _user_id(request: HttpRequest) -> int | None:
    """The signed-in user's id, without loading a user nobody asked for.

    Paths that authenticate without ``request.user`` (the lean checkout) bind
    the id instead (``correlation.user_id_bind``).
    """
    user = request.__dict__.get("user")
    if user is not None and not (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        pk = user.pk if user.is_authenticated else None
        if isinstance(pk, int):
            return pk
    return correlation.user_id_current()


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        self.process_request(request)
        return self.process_response(request, self.get_response(request))

    def process_request(self, request: HttpRequest) -> None:
        request_id = correlation.request_id_accept(request.META.get(correlation.META_KEY))
        correlation.request_id_bind(request_id)
        request.request_id = request_id  # type: ignore[attr-defined]
        setattr(request, _STARTED, time.perf_counter())

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        request_id = getattr(request, "request_id", None)
        if request_id is not None:
            response[correlation.HEADER] = request_id
        started = getattr(request, _STARTED, None)
        access_log.info(
            "request",
            method=request.method,
            path=request.path_info,
            route=route_of(request),
            status=response.status_code,
            user_id=_user_id(request),
            duration_ms=(
                round((time.perf_counter() - started) * 1000.0, 2) if started is not None else None
            ),
        )
        return response
