"""``/health/live`` and ``/health/ready`` (see health.py for what each means)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from emporium.core.errors import error_body
from emporium.observability.health import readiness_assess

RETRY_AFTER_SECONDS = 5


@never_cache
@require_safe
def live(request: HttpRequest) -> JsonResponse:
    """The process answers: nothing else is asked, so a lost dependency never restarts it."""
    return JsonResponse({"status": "live"})


@never_cache
@require_safe
def ready(request: HttpRequest) -> JsonResponse:
    readiness = readiness_assess()
    if readiness.ready:
        return JsonResponse({"status": readiness.status, "checks": readiness.checks})
    response = JsonResponse(
        error_body(
            "not_ready",
            "A dependency this process cannot serve without is unavailable.",
            {"checks": readiness.checks},
        ),
        status=503,
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
