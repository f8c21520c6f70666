"""Liveness, readiness (see health.py for what each means) and ``GET /metrics``.

The probes are DRF views, so that a method other than GET or HEAD is answered
in the API's one error shape; they authenticate nobody and are left out of
the schema. Each is served at two spellings: ``/health/live`` and
``/healthz``, ``/health/ready`` and ``/readyz``.

``/metrics`` answers only a client whose address is in
``METRICS_ALLOWED_NETWORKS`` (loopback unless configured), or a request
carrying ``Authorization: Bearer <METRICS_TOKEN>`` when a token is set.
Anyone else, and any method but GET and HEAD, gets the 404 of a path that
does not exist, so the endpoint is not revealed.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.core.client_ip import client_ip
from emporium.core.errors import error_body
from emporium.observability.health import readiness_assess
from emporium.observability.metrics import CONTENT_TYPE, exposition

RETRY_AFTER_SECONDS = 5


class HealthView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes: list[type] = []
    http_method_names = ["get", "head"]
    schema = None

    def finalize_response(
        self, request: Request, response: Response, *args: object, **kwargs: object
    ) -> Response:
        add_never_cache_headers(response)
        return super().finalize_response(request, response, *args, **kwargs)


class LiveView(HealthView):
    def get(self, request: Request) -> Response:
        """The process answers: nothing else is asked, so a lost dependency never restarts it."""
        return Response({"status": "live"})


class ReadyView(HealthView):
    def get(self, request: Request) -> Response:
        readiness = readiness_assess()
        if readiness.ready:
            body: dict[str, object] = {"status": readiness.status, "checks": readiness.checks}
            if readiness.replicas:
                body["replicas"] = readiness.replicas
            return Response(body)
        return Response(
            error_body(
                "not_ready",
                "A dependency this process cannot serve without is unavailable.",
                {"checks": readiness.checks},
            ),
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), token.encode()
    )


def _address_allowed(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in settings.METRICS_ALLOWED_NETWORKS)


def metrics_access_allowed(request: HttpRequest) -> bool:
    """Whether ``request`` may read the metrics: an allowed network, or the bearer token."""
    if not settings.METRICS_ENABLED:
        return False
    token: str | None = settings.METRICS_TOKEN
    return (token is not None and _bearer_matches(request, token)) or _address_allowed(request)


def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text format of every metric this server's workers counted."""
    if request.method not in ("GET", "HEAD") or not metrics_access_allowed(request):
        raise Http404
    response = HttpResponse(exposition(), content_type=CONTENT_TYPE)
    add_never_cache_headers(response)
    return response


# Every other method is a 404 here too, TRACE included (core.middleware.UnservedMethodMiddleware).
metrics.answers_every_method = True  # type: ignore[attr-defined]
