"""Hot anonymous reads answered in front of Django's request handler (docs/adr/0020).

Under load an uncached product detail spent about two thirds of its CPU in
Django's request cycle: the handler, ten middleware, URL resolution and DRF's
view wrapper around a read that needs none of them. :class:`LeanGateway` wraps
the WSGI application and answers chosen routes itself, for requests that
nothing on the full path could answer differently:

- a GET with no cookies (no ``Cookie`` header, or an empty one: no session, no
  CSRF cookie is involved), at a path a :class:`Route` names, and either
  without an ``Authorization`` header or, for a route that takes signed-in
  requests (:class:`Access`), with a Bearer token that ``bearer_user`` accepts
  (a valid access token of an active account, checked as DRF's authentication
  checks it, ``emporium.accounts.authentication``). A token it refuses sends the
  request to Django, which answers the 401;
- accepted by the request phase of the middleware that can refuse or redirect
  a request (host validation, disallowed user agents, the HTTPS redirect): that
  phase runs here too, and any answer it gives sends the request to Django;
- answered by the route's handler, which returns None for anything it does not
  take (the catalog's lean reads, ``emporium.catalog.fast_path``).

Everything else goes to the wrapped application unchanged. A handler that
raises has failed, and the gateway answers as Django's ``handler500`` does
(``core.views.server_error``): the error is logged and answered 500 in the one
error shape, or 503 ``service_busy`` when the database had no connection to
give; it is never tried again on Django's path. An answered request
is finished as Django finishes it: the response phase of the header-setting
middleware runs in Django's order, the view's default headers (``Allow``) are
added, the request signals are sent (they return the database connection to
the pool, or keep it to ``CONN_MAX_AGE``), and ``on_answered(request,
response, duration_ms=)`` is told how long it took (``config.wsgi`` has the
live dashboard and Prometheus count it, as the timing middleware counts
requests on Django's path). The middleware list is
checked when the gateway is built: a middleware it does not know stops the
server from starting, so a new one cannot be skipped by accident.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import request_finished, request_started
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import ResolverMatch, resolve
from django.utils.module_loading import import_string
from rest_framework.renderers import JSONRenderer

from emporium.core.db.replicas import replica_failover
from emporium.core.errors import database_overloaded
from emporium.core.views import server_error

logger = logging.getLogger(__name__)

WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Handler = Callable[..., HttpResponse | None]
# The user of a request's valid Bearer token, or None to leave the request to Django.
BearerUser = Callable[[HttpRequest], Any]


class Access(enum.Enum):
    """Which requests a route answers, by their credentials."""

    ANONYMOUS = "anonymous"  # no Authorization header only
    ANYONE = "anyone"  # anonymous, or signed in (the answer does not depend on the user)
    SIGNED_IN = "signed_in"  # a valid Bearer token only; the handler reads request.user


# Middleware whose request phase may refuse or redirect a GET, and whose response
# phase sets headers: both phases run here, as Django would run them.
RUN = frozenset(
    {
        # Binds the request id, sets X-Request-ID and writes the access-log line.
        "emporium.observability.requests.RequestContextMiddleware",
        # Lets the anonymous read go to a replica (emporium.core.db.replicas).
        "emporium.core.db.replicas.ReplicaRoutingMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "emporium.core.middleware.SecurityHeadersMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    }
)
# Middleware with nothing to do for a cookie-less GET: no session to load or save,
# no CSRF cookie, no messages, no body, no unserved method; the user is the Bearer
# token's, set by the gateway as DRF's authentication would. The timing middleware's
# work is done by the gateway itself.
SKIP = frozenset(
    {
        # Answers only the probes and the scrape, never a gateway route.
        "emporium.observability.operational.OperationalEndpointsMiddleware",
        "emporium.dashboard.middleware.RequestTimingMiddleware",
        "emporium.core.middleware.BodySizeLimitMiddleware",
        "emporium.core.middleware.UnservedMethodMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        # Tracing's server span (emporium.observability.tracing): a span begun here
        # would stay open if the route handed the request to Django after all.
        "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware",
    }
)


@dataclass(frozen=True)
class Route:
    """A path the gateway answers: ``pattern`` must match all of PATH_INFO.

    ``handler(request, **groups)`` returns the response, or None to leave the
    request to Django. ``view_path`` is a path the URL configuration resolves to
    the same view, from which the view's default headers are taken.
    """

    pattern: re.Pattern[str]
    handler: Handler
    view_path: str
    view_headers: dict[str, str] = field(default_factory=dict)
    # The URL configuration's match for view_path: its route pattern names the
    # route in the access log, as on Django's path (its arguments are view_path's).
    view_match: ResolverMatch | None = None
    access: Access = Access.ANONYMOUS


def exact_route(path: str, handler: Handler, *, access: Access) -> Route:
    """A route answering exactly ``path`` (a path of the URL configuration) with ``handler``."""
    return Route(re.compile(re.escape(path)), handler, path, access=access)


# Accept headers DRF's negotiation answers with JSON (the only renderer); any other
# takes DRF's path (a 406 there), as does a ``format`` parameter.
JSON_ACCEPTS = frozenset({"", "*/*", "application/json", "application/*"})


def json_read(request: HttpRequest) -> bool:
    """Whether DRF would answer this GET with its JSON renderer and nothing else to negotiate."""
    return (
        "format" not in request.GET and request.META.get("HTTP_ACCEPT", "").strip() in JSON_ACCEPTS
    )


_renderer = JSONRenderer()


def json_answer(data: Any) -> HttpResponse:
    """A 200 with ``data`` in the bytes and content type DRF's JSON renderer gives."""
    return HttpResponse(_renderer.render(data), content_type=_renderer.media_type)


def _middleware(paths: Sequence[str]) -> tuple[list[Any], list[Any]]:
    """The instances whose request and response phases the gateway runs, in Django's order."""
    unknown = [path for path in paths if path not in RUN and path not in SKIP]
    if unknown:
        raise ImproperlyConfigured(
            f"LeanGateway does not know what {', '.join(unknown)} would do to an anonymous "
            "read; add each to emporium.core.gateway.RUN or SKIP (docs/adr/0020)."
        )
    instances = [
        import_string(path)(lambda request: HttpResponse()) for path in paths if path in RUN
    ]
    requesting = [instance for instance in instances if hasattr(instance, "process_request")]
    # Responses pass back through the middleware in reverse order.
    responding = [
        instance for instance in reversed(instances) if hasattr(instance, "process_response")
    ]
    return requesting, responding


def view_default_headers(path: str) -> dict[str, str]:
    """The headers DRF's ``finalize_response`` adds to every answer of the view at ``path``."""
    view_function = resolve(path).func
    view_class = getattr(view_function, "cls", None)
    if view_class is None:
        return {}
    view = view_class(**getattr(view_function, "initkwargs", {}))
    actions = dict(getattr(view_function, "actions", None) or {})
    if actions:  # as ViewSetMixin.as_view binds them
        if "get" in actions and "head" not in actions:
            actions["head"] = actions["get"]
        view.action_map = actions
        for method, action in actions.items():
            setattr(view, method, getattr(view, action))
    elif hasattr(view, "get") and not hasattr(view, "head"):
        view.head = view.get  # as View.setup() does for a view without its own HEAD
    return dict(view.default_response_headers)


class LeanGateway:
    """A WSGI application answering ``routes`` itself and the rest through ``application``."""

    def __init__(
        self,
        application: WSGIApplication,
        routes: Sequence[Route],
        *,
        on_answered: Callable[..., object] | None = None,
        bearer_user: BearerUser | None = None,
    ) -> None:
        self.application = application
        self.on_answered = on_answered
        self.bearer_user = bearer_user
        self.requesting, self.responding = _middleware(settings.MIDDLEWARE)
        self.routes = [
            Route(
                route.pattern,
                route.handler,
                route.view_path,
                view_default_headers(route.view_path),
                resolve(route.view_path),
                route.access,
            )
            for route in routes
        ]
        if bearer_user is None and any(r.access is Access.SIGNED_IN for r in self.routes):
            raise ImproperlyConfigured("A route for signed-in requests needs bearer_user.")

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if (
            environ.get("REQUEST_METHOD") == "GET"
            and not environ.get("HTTP_COOKIE")
            and not environ.get("SCRIPT_NAME")
        ):
            signed = "HTTP_AUTHORIZATION" in environ
            path = environ.get("PATH_INFO", "")
            for route in self.routes:
                match = route.pattern.fullmatch(path)
                if match is not None:
                    if route.access is (Access.SIGNED_IN if not signed else Access.ANONYMOUS):
                        break  # Django's to answer: a 401, or a read the route does not take
                    if signed and self.bearer_user is None:
                        break
                    answered = self._answer(environ, start_response, route, match.groupdict())
                    if answered is not None:
                        return answered
                    break
        return self.application(environ, start_response)

    def _answer(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        route: Route,
        arguments: dict[str, str],
    ) -> list[bytes] | None:
        started = time.perf_counter()
        request = WSGIRequest(environ)
        request.resolver_match = route.view_match
        request_started.send(sender=self.__class__, environ=environ)
        try:
            response = self._respond(request, route, arguments)
        finally:
            request_finished.send(sender=self.__class__)
        if response is None:
            return None
        if self.on_answered is not None:
            self.on_answered(
                request, response, duration_ms=(time.perf_counter() - started) * 1000.0
            )
        cookies = [("Set-Cookie", c.output(header="")) for c in response.cookies.values()]
        status = f"{response.status_code} {response.reason_phrase}"
        start_response(status, [*response.items(), *cookies])
        return [response.content]

    def _respond(
        self, request: HttpRequest, route: Route, arguments: dict[str, str]
    ) -> HttpResponse | None:
        try:
            for middleware in self.requesting:
                if middleware.process_request(request) is not None:
                    return None  # a refusal or a redirect: Django's to give
            if "HTTP_AUTHORIZATION" in request.META:
                user = self.bearer_user(request) if self.bearer_user is not None else None
                if user is None:
                    return None  # no valid token of an active account: DRF answers (401)
                request.user = user
            response = replica_failover(lambda: route.handler(request, **arguments))
        except SuspiciousOperation:  # a disallowed Host: Django answers 400 and logs it
            return None
        except Exception as error:
            # An error in a lean read is an error, never handed to Django to try
            # again: logged, and answered as Django answers one (handler500): a
            # 500 in the one error shape, or a 503 when the database has no
            # connection to give (Django's path would only wait for one again).
            if database_overloaded(error):
                logger.warning("database busy, answered 503: %s", error)
            else:
                logger.exception("lean read failed: %s %s", request.method, request.path)
            response = server_error(request)
        if response is None:
            return None
        for name, value in route.view_headers.items():
            response[name] = value
        finished: HttpResponseBase = response
        for middleware in self.responding:
            finished = middleware.process_response(request, finished)
        assert isinstance(finished, HttpResponse)  # noqa: S101 - header middleware only
        return finished
