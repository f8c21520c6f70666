"""HTTP requests and their database statements, counted for Prometheus.

A request is timed once, by whatever answers it: ``RequestTimingMiddleware``
on Django's path, the lean gateway for the reads it answers
(``emporium.core.gateway``). Both hand the one measurement to
``emporium.dashboard.middleware.request_answered``, which gives it to the live
dashboard and to :func:`http_request_record` here. The route label is the URL
pattern the request resolved to (the gateway sets the pattern of the view it
stands in for), ``unmatched`` when none did. Probes and scrapes are answered
before the timing middleware (``operational``), so they are never counted.

Statements are timed by an execute wrapper on every database connection
(``metrics.db_connection_instrument``), counted per thread from the start of
the request (``request_started``, and again by the timing middleware, which
under ASGI may run on another thread than the signal).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.core.signals import request_started
from django.db import connections
from django.db.backends.signals import connection_created
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from emporium.observability import metrics

# Any other method string would be a label value a client could choose.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# A named group of a regular-expression route, e.g. DRF's router's (?P<pk>[^/.]+).
_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


@functools.lru_cache(maxsize=512)
def route_label(pattern: str) -> str:
    """The URL pattern as the metrics and the access log name it.

    ``path()`` patterns stay as written (``api/orders/<int:order_pk>/payments/``);
    the regular expressions of DRF's routers read the same way
    (``api/orders/(?P<pk>\\d+)/$`` is ``api/orders/<pk>/``). Patterns are few, so
    their labels are cached.
    """
    return _NAMED_GROUP.sub(r"<\1>", pattern).removeprefix("^").removesuffix("$")


def route_of(request: HttpRequest) -> str:
    """The request's route label, ``unmatched`` when no pattern matched its path."""
    match = getattr(request, "resolver_match", None)
    return route_label(match.route) if match is not None else metrics.UNMATCHED_ROUTE


def http_request_record(
    request: HttpRequest, response: HttpResponseBase, *, duration_seconds: float
) -> None:
    """Counts one answered request, its latency and its database statements."""
    method = request.method if request.method in _METHODS else "other"
    queries, db_seconds = metrics.db_tally()
    metrics.http_request_count(
        (route_of(request), method, response.status_code),
        seconds=duration_seconds,
        queries=queries,
        db_seconds=db_seconds,
    )


def _request_began(sender: object, **kwargs: Any) -> None:
    metrics.db_tally_reset()


_DB_RECEIVER = "emporium.metrics.db"
_REQUEST_RECEIVER = "emporium.metrics.request"


def instrumentation_install() -> None:
    """Times database statements and marks where requests begin; once per process.

    Called by the app's ``ready()`` when ``METRICS_ENABLED`` is on; with it off
    nothing is connected and no statement is wrapped.
    """
    connection_created.connect(metrics.db_connection_instrument, dispatch_uid=_DB_RECEIVER)
    request_started.connect(_request_began, dispatch_uid=_REQUEST_RECEIVER)
    metrics.worker_exit_register()


def instrumentation_remove() -> None:
    """Undoes :func:`instrumentation_install` in this process, open connections included.

    For measuring what the instrumentation costs in one process (``bench.metrics_cpu``).
    """
    connection_created.disconnect(dispatch_uid=_DB_RECEIVER)
    request_started.disconnect(dispatch_uid=_REQUEST_RECEIVER)
    for connection in connections.all(initialized_only=True):
        metrics.db_connection_uninstrument(connection)
