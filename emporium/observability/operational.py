"""The paths machines call, not people: the orchestrator's probes and Prometheus' scrape.

:class:`OperationalEndpointsMiddleware`, first in ``MIDDLEWARE``, answers them
before the rest of the middleware runs, and so they are neither counted as
traffic (the timing middleware), nor logged (the request context's access
line), nor traced (``tracing`` puts its middleware right after this one).

It answers them early because of who asks. A kubelet probes a pod by its
address, and Prometheus scrapes each app server by the name or address it
discovered (``pod-ip:8000``, ``web-1:8000``): the ``Host`` they send is not one
of ``ALLOWED_HOSTS``, and Django's host validation, which ``CommonMiddleware``
runs on every request, would answer 400. These views build no URL from the
host, so validating it protects nothing here. Nor do they need a session,
CSRF, a user or a body: the middleware resolves the path and calls the view
itself, turning an exception into the response Django would give
(``response_for_exception``: a 404 in the one error shape, for instance).
Every other path goes down the middleware chain unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import resolve

PROBE_PATHS = frozenset({"/health/live", "/health/ready", "/healthz", "/readyz"})
SCRAPE_PATH = "/metrics"
OPERATIONAL_PATHS = PROBE_PATHS | {SCRAPE_PATH}


class OperationalEndpointsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info not in OPERATIONAL_PATHS:
            return self.get_response(request)
        try:
            match = resolve(request.path_info)
            request.resolver_match = match
            response = match.func(request, *match.args, **match.kwargs)
            render = getattr(response, "render", None)
            if callable(render):  # DRF's Response, as Django's handler renders it
                response = render()
        except Exception as error:
            response = response_for_exception(request, error)
        assert isinstance(response, HttpResponseBase)  # noqa: S101 - views return responses
        return response
