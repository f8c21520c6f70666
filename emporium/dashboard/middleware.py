"""Times every HTTP request for the live dashboard's requests/s and p95 figures."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase

from emporium.dashboard import collector, publisher

# Not counted: static files, WebSockets (they never reach this middleware on
# Channels, but a plain HTTP request to the path may), and the dashboard's own
# page and sign-in, so that watching the figures does not move them.
EXCLUDED_PREFIXES = ("/static/", "/ws/", "/dashboard/")


class RequestTimingMiddleware:
    """Records each request's duration in this process's histogram: no I/O.

    Synchronous like the rest of the stack (an async one would add a thread
    switch under ASGI). In an ASGI server process it also makes sure the
    metrics publisher runs (``publisher``); WSGI deployments run
    ``manage.py dashboard_publisher`` instead, and the test client's requests
    start nothing.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        if not request.path.startswith(EXCLUDED_PREFIXES):
            collector.request_record(duration_ms=(time.perf_counter() - started) * 1000.0)
        if isinstance(request, ASGIRequest):
            publisher.publisher_thread_ensure()
        return response
