"""``/health/live`` and ``/health/ready`` (see health.py for what each means).

DRF views, so that a method other than GET or HEAD is answered in the API's
one error shape; they authenticate nobody and are left out of the schema.
"""

from __future__ import annotations

from django.utils.cache import add_never_cache_headers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.core.errors import error_body
from emporium.observability.health import readiness_assess

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
            return Response({"status": readiness.status, "checks": readiness.checks})
        return Response(
            error_body(
                "not_ready",
                "A dependency this process cannot serve without is unavailable.",
                {"checks": readiness.checks},
            ),
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
