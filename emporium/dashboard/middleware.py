"""Times every HTTP request, once, for the live dashboard and for Prometheus."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase

from emporium.dashboard import collector, publisher
from emporium.observability.instrumentation import http_request_record
from emporium.observability.metrics import db_tally_reset, metrics_enabled

# Not counted: static files, WebSockets (they never reach this middleware on
# Channels, but a plain HTTP request to the path may), and the dashboard's own
# page and sign-in, so that watching the figures does not move them.
EXCLUDED_PREFIXES = ("/static/", "/ws/", "/dashboard/")


def request_answered(
    request: HttpRequest, response: HttpResponseBase, *, duration_ms: float
) -> None:
    """Where one answered request's measured time goes: the dashboard and Prometheus.

    Called by :class:`RequestTimingMiddleware` and, for the reads it answers, by
    the lean gateway (``config.wsgi``), so both paths are counted alike.
    """
    if not request.path.startswith(EXCLUDED_PREFIXES):
        collector.request_record(duration_ms=duration_ms)
    if metrics_enabled():
        http_request_record(request, response, duration_seconds=duration_ms / 1000.0)


class RequestTimingMiddleware:
    """Measures each request's duration and hands it to :func:`request_answered`: no I/O.

    Synchronous like the rest of the stack (an async one would add a thread
    switch under ASGI). In an ASGI server process it also makes sure the
    metrics publisher runs (``publisher``); WSGI deployments run
    ``manage.py dashboard_publisher`` instead, and the test client's requests
    start nothing.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.metrics = metrics_enabled()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        if self.metrics:
            db_tally_reset()
        response = self.get_response(request)
        request_answered(request, response, duration_ms=(time.perf_counter() - started) * 1000.0)
        if isinstance(request, ASGIRequest):
            publisher.publisher_thread_ensure()
        return response
