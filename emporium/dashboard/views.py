"""The live operations page and its staff sign-in (server-rendered, one static bundle)."""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from django.contrib.auth.views import LoginView, LogoutView, redirect_to_login
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError

from emporium.core.throttling import login_attempt_wait
from emporium.dashboard.forms import StaffAuthenticationForm
from emporium.dashboard.models import VIEW_DASHBOARD
from emporium.dashboard.selectors import metrics_history

logger = logging.getLogger(__name__)

# Built by `make frontend` from frontend/src (not committed; see ADR 0015).
BUNDLE = "dashboard/build/dashboard.js"
SOCKET_PATH = "/ws/dashboard/"
# How much history the charts keep in the browser.
CHART_WINDOW_MINUTES = 15


def history_json() -> str:
    """The ``metrics`` events of the last minutes as JSON, for the charts to start from.

    The page carries it in a data attribute (its policy allows no inline script).
    A store that cannot be read leaves the charts to fill from the live stream.
    """
    try:
        events = [metrics.as_event() for metrics in metrics_history(second=int(time.time()))]
    except (RedisError, OSError):
        logger.warning("could not read the dashboard's history", exc_info=True)
        events = []
    return json.dumps(events, separators=(",", ":"))


def bundle_built() -> bool:
    """Whether ``make frontend`` has built the page's script."""
    return finders.find(BUNDLE) is not None


@never_cache
@require_GET
def dashboard_page(request: HttpRequest) -> HttpResponse:
    """For holders of ``dashboard.view_dashboard``: others sign in first, or get 403."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url=reverse("dashboard-login"))
    if not request.user.has_perm(VIEW_DASHBOARD):
        return render(request, "dashboard/forbidden.html", status=403)
    return render(
        request,
        "dashboard/dashboard.html",
        {
            "bundle_built": bundle_built(),
            "bundle": BUNDLE,
            "socket_path": SOCKET_PATH,
            "window_minutes": CHART_WINDOW_MINUTES,
            "history": history_json(),
        },
    )


class DashboardLoginView(LoginView):
    """Django's sign-in form, for dashboard viewers only, under the API login's rate limits.

    Each POST is one attempt under the API login's limits (per address and per
    username, ``login_attempt_wait``) on the same counters, so the form is not
    a way around them; a refused attempt is 429 and never checks the password.
    """

    template_name = "dashboard/login.html"
    authentication_form = StaffAuthenticationForm
    next_page = "dashboard"  # a URL name; resolve_url turns it into the path
    redirect_authenticated_user = False

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = login_attempt_wait(request, self)
        if wait is not None:
            seconds = math.ceil(wait)
            response = render(
                request, "dashboard/login_throttled.html", {"wait_seconds": seconds}, status=429
            )
            response["Retry-After"] = str(seconds)
            return response
        return super().post(request, *args, **kwargs)


class DashboardLogoutView(LogoutView):
    next_page = "dashboard-login"
