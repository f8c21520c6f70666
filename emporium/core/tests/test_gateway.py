"""The lean gateway (docs/adr/0020) against Django's own handler, called as a WSGI server would.

Each request is sent twice from the same environ: once to a gateway in front of
Django's handler (as ``config.wsgi`` builds it) and once to the handler alone.
The gateway's answer must be Django's, byte for byte and header for header;
for the routes it takes it must give it without calling Django at all, and for
everything else it must hand the request on unchanged. With the response cache
off every answer is built now, so Last-Modified is compared as present or not.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings
from django.urls import resolve
from rest_framework_simplejwt.tokens import RefreshToken

from config.wsgi import django_application, lean_gateway
from emporium.catalog.fast_path import gateway_routes
from emporium.catalog.tests.support import PRODUCT_LIST_URL, product_url
from emporium.core.gateway import LeanGateway, Route
from emporium.core.tests.factories import CategoryFactory, ProductFactory, UserFactory
from emporium.dashboard import collector
from emporium.observability.instrumentation import route_label
from emporium.observability.tests.metric_samples import sample
from tests.support.wsgi import wsgi_call

pytestmark = pytest.mark.django_db

HOST = "testserver"
MakeEnviron = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Answer:
    status: str
    headers: Counter[tuple[str, str]]
    body: bytes


class CountingApplication:
    """The real Django handler behind a counter of the requests it was given."""

    def __init__(self, application: Callable[..., Iterable[bytes]]) -> None:
        self.application = application
        self.calls = 0

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        self.calls += 1
        return self.application(environ, start_response)


def environ_for(
    path: str, *, method: str = "get", host: str = HOST, cookie_header: bool = True, **extra: Any
) -> MakeEnviron:
    """A maker of fresh environs (a new wsgi.input each time) for one request.

    RequestFactory always sets HTTP_COOKIE, empty when it has no cookies;
    ``cookie_header=False`` leaves the header out, as most clients without
    cookies do.
    """

    def make() -> dict[str, Any]:
        request = getattr(RequestFactory(), method)(path, HTTP_HOST=host, **extra)
        environ = dict(request.environ)
        if not cookie_header:
            environ.pop("HTTP_COOKIE", None)
        return environ

    return make


_PER_CALL_HEADERS = frozenset({"Last-Modified", "X-Request-ID"})


def call(application: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> Answer:
    """What a WSGI server would send: status, headers (a multiset) and body.

    Last-Modified and a generated X-Request-ID differ from call to call: they
    are compared as present or not.
    """
    status, header_list, body = wsgi_call(application, environ)
    headers = Counter(
        (name, "present" if name in _PER_CALL_HEADERS else value) for name, value in header_list
    )
    return Answer(status, headers, body)


# The catalog's lean reads answer where PostgreSQL writes the rows (docs/adr/0020);
# elsewhere they hand every read to Django.
lean_reads = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the catalog's lean reads need PostgreSQL"
)


@pytest.fixture(autouse=True)
def _uncached() -> Iterator[None]:
    with override_settings(CATALOG_CACHE_ENABLED=False):
        yield


@pytest.fixture
def _inside_test_transaction() -> Iterator[None]:
    """As Django's test client does: a request must not close the test's connection.

    Inside the test's transaction ``close_old_connections`` would drop the
    connection the test runs in; the client disconnects it for each request.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def django_app(_inside_test_transaction: None) -> CountingApplication:
    return CountingApplication(django_application)


@pytest.fixture
def gateway(django_app: CountingApplication) -> LeanGateway:
    return lean_gateway(django_app)  # as config.wsgi wires it


@pytest.fixture
def catalog() -> dict[str, Any]:
    """A small tree with products at several prices, in and out of stock."""
    home = CategoryFactory(name="Home")
    kitchen = CategoryFactory(name="Kitchen", parent=home)
    garden = CategoryFactory(name="Garden")
    products = [
        ProductFactory(
            name=f"Item {index}",
            price=Decimal(("4.99", "12.30", "0.50", "100.00")[index % 4]),
            stock_quantity=(0, 3)[index % 2],
            category=(kitchen, garden, home)[index % 3],
            attributes={"n": index, "ünï": "ç"} if index % 2 else {},
            description='line\nbreak "quoted" <tag>',
        )
        for index in range(8)
    ]
    return {"home": home, "kitchen": kitchen, "garden": garden, "products": products}


def _next_link_path(gateway: LeanGateway) -> str:
    first = call(gateway, environ_for(f"{PRODUCT_LIST_URL}?page_size=3&ordering=price")())
    link = json.loads(first.body)["next"]
    assert link
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


ELIGIBLE: dict[str, Callable[[dict[str, Any], LeanGateway], str]] = {
    "list": lambda catalog, gateway: PRODUCT_LIST_URL,
    "ordering": lambda catalog, gateway: f"{PRODUCT_LIST_URL}?ordering=-price",
    "category": lambda catalog, gateway: f"{PRODUCT_LIST_URL}?category={catalog['home'].pk}",
    "prices": lambda catalog, gateway: f"{PRODUCT_LIST_URL}?min_price=1&max_price=100.00",
    "in_stock": lambda catalog, gateway: f"{PRODUCT_LIST_URL}?in_stock=true&ordering=name",
    "page_size": lambda catalog, gateway: f"{PRODUCT_LIST_URL}?page_size=3",
    "next": lambda catalog, gateway: _next_link_path(gateway),
    "detail": lambda catalog, gateway: product_url(catalog["products"][3].pk),
}


@lean_reads
@pytest.mark.parametrize("case", sorted(ELIGIBLE))
def test_the_gateway_answers_eligible_reads_itself_exactly_as_django_does(
    catalog: dict[str, Any],
    gateway: LeanGateway,
    django_app: CountingApplication,
    case: str,
) -> None:
    path = ELIGIBLE[case](catalog, gateway)
    make = environ_for(path)
    django_app.calls = 0

    lean = call(gateway, make())
    assert django_app.calls == 0  # answered in front of Django

    full = call(django_application, make())
    assert lean == full
    assert lean.status == "200 OK"
    assert lean.headers[("Last-Modified", "present")] == 1
    assert json.loads(lean.body)  # a real page, not an empty answer


@lean_reads
def test_a_read_with_no_cookie_header_at_all_is_answered_as_one_with_an_empty_header(
    catalog: dict[str, Any], gateway: LeanGateway, django_app: CountingApplication
) -> None:
    make = environ_for(product_url(catalog["products"][2].pk), cookie_header=False)
    assert "HTTP_COOKIE" not in make()

    lean = call(gateway, make())
    assert django_app.calls == 0

    assert lean == call(django_application, make())
    assert lean == call(gateway, environ_for(product_url(catalog["products"][2].pk))())


def _bearer(valid: bool) -> dict[str, str]:
    """A refused token (valid ones are answered by the gateway: test_gateway_signed_in)."""
    if not valid:
        return {"HTTP_AUTHORIZATION": "Bearer not-a-token"}
    return {"HTTP_AUTHORIZATION": f"Bearer {RefreshToken.for_user(UserFactory()).access_token}"}


HANDED_OVER: dict[str, tuple[Callable[[dict[str, Any]], MakeEnviron], str]] = {
    "bad token": (
        lambda catalog: environ_for(PRODUCT_LIST_URL, **_bearer(valid=False)),
        "401 Unauthorized",
    ),
    "cookie": (
        lambda catalog: environ_for(PRODUCT_LIST_URL, HTTP_COOKIE="sessionid=nothing"),
        "200 OK",
    ),
    "post": (
        lambda catalog: environ_for(
            PRODUCT_LIST_URL, method="post", data={"name": "x"}, content_type="application/json"
        ),
        "401 Unauthorized",
    ),
    "head": (lambda catalog: environ_for(PRODUCT_LIST_URL, method="head"), "200 OK"),
    "leading zero id": (
        lambda catalog: environ_for(f"{PRODUCT_LIST_URL}0{catalog['products'][0].pk}/"),
        "200 OK",
    ),
    "missing product": (lambda catalog: environ_for(product_url(99_999_999)), "404 Not Found"),
    "bad min_price": (
        lambda catalog: environ_for(f"{PRODUCT_LIST_URL}?min_price=abc"),
        "400 Bad Request",
    ),
    "unknown category": (
        lambda catalog: environ_for(f"{PRODUCT_LIST_URL}?category=99999999"),
        "400 Bad Request",
    ),
    "html accept": (
        lambda catalog: environ_for(PRODUCT_LIST_URL, HTTP_ACCEPT="text/html"),
        "406 Not Acceptable",
    ),
    "format parameter": (lambda catalog: environ_for(f"{PRODUCT_LIST_URL}?format=json"), "200 OK"),
    "disallowed host": (
        lambda catalog: environ_for(PRODUCT_LIST_URL, host="evil.example"),
        "400 Bad Request",
    ),
}


@pytest.mark.parametrize("case", sorted(HANDED_OVER))
def test_the_gateway_hands_other_requests_to_django_unchanged(
    catalog: dict[str, Any],
    gateway: LeanGateway,
    django_app: CountingApplication,
    case: str,
) -> None:
    make_for, status = HANDED_OVER[case]
    make = make_for(catalog)

    through_gateway = call(gateway, make())  # no exception escapes, whatever the request
    assert django_app.calls == 1

    direct = call(django_application, make())
    assert through_gateway == direct
    assert through_gateway.status == status


@pytest.mark.parametrize(
    ("case", "make", "code"),
    [
        ("missing product", environ_for(product_url(99_999_999)), "not_found"),
        ("bad min_price", environ_for(f"{PRODUCT_LIST_URL}?min_price=abc"), None),
    ],
)
def test_refusals_handed_over_come_in_the_error_shape(
    catalog: dict[str, Any], gateway: LeanGateway, case: str, make: MakeEnviron, code: str | None
) -> None:
    answer = call(gateway, make())
    body = json.loads(answer.body)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    if code is not None:
        assert body["error"]["code"] == code
    else:
        assert "min_price" in body["error"]["details"]


@pytest.mark.usefixtures("_inside_test_transaction")
def test_an_https_redirect_is_djangos_to_give(catalog: dict[str, Any]) -> None:
    with override_settings(SECURE_SSL_REDIRECT=True):
        handler = WSGIHandler()  # middleware read their settings when built
        counted = CountingApplication(handler)
        gateway = LeanGateway(counted, gateway_routes())
        make = environ_for(PRODUCT_LIST_URL)

        through_gateway = call(gateway, make())
        assert counted.calls == 1
        direct = call(handler, make())

    assert through_gateway == direct
    assert through_gateway.status == "301 Moved Permanently"
    assert through_gateway.headers[("Location", f"https://{HOST}{PRODUCT_LIST_URL}")] == 1


@lean_reads
@pytest.mark.usefixtures("_inside_test_transaction")
def test_an_https_read_under_the_redirect_is_answered_with_djangos_security_headers(
    catalog: dict[str, Any],
) -> None:
    with override_settings(SECURE_SSL_REDIRECT=True, SECURE_HSTS_SECONDS=3600):
        handler = WSGIHandler()
        counted = CountingApplication(handler)
        gateway = LeanGateway(counted, gateway_routes())
        make = environ_for(product_url(catalog["products"][1].pk), secure=True)

        through_gateway = call(gateway, make())
        assert counted.calls == 0
        direct = call(handler, make())

    assert through_gateway == direct
    assert through_gateway.status == "200 OK"
    assert through_gateway.headers[("Strict-Transport-Security", "max-age=3600")] == 1


@lean_reads
@pytest.mark.parametrize("page", ["list", "detail"])
def test_if_none_match_gets_a_304_from_the_gateway_with_djangos_headers(
    catalog: dict[str, Any], gateway: LeanGateway, django_app: CountingApplication, page: str
) -> None:
    path = PRODUCT_LIST_URL if page == "list" else product_url(catalog["products"][2].pk)
    first = call(gateway, environ_for(path)())
    (etag,) = [value for name, value in first.headers if name == "ETag"]
    make = environ_for(path, HTTP_IF_NONE_MATCH=etag)

    lean = call(gateway, make())
    assert django_app.calls == 0

    full = call(django_application, make())
    assert lean == full
    assert lean.status == "304 Not Modified"
    assert lean.body == b""
    assert lean.headers[("ETag", etag)] == 1


def test_an_unknown_middleware_stops_the_gateway_from_being_built() -> None:
    with (
        override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, "some.Unknown"]),
        pytest.raises(ImproperlyConfigured, match=r"some\.Unknown"),
    ):
        LeanGateway(django_application, gateway_routes())


def test_the_configured_middleware_are_all_known() -> None:
    LeanGateway(django_application, gateway_routes())  # raises if one is not


def test_a_failing_route_handler_is_a_logged_500_not_a_second_try_on_django(
    catalog: dict[str, Any],
    django_app: CountingApplication,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(request: HttpRequest) -> HttpResponse | None:
        raise RuntimeError("lean read broke")

    gateway = LeanGateway(
        django_app, [Route(re.compile(re.escape(PRODUCT_LIST_URL)), broken, PRODUCT_LIST_URL)]
    )
    make = environ_for(PRODUCT_LIST_URL)

    with caplog.at_level(logging.WARNING, logger="emporium.core.gateway"):
        through_gateway = call(gateway, make())
    assert django_app.calls == 0
    assert any(record.exc_info for record in caplog.records)
    assert through_gateway.status == "500 Internal Server Error"
    assert json.loads(through_gateway.body) == {
        "error": {
            "code": "internal_error",
            "message": "An unexpected error occurred.",
            "details": {},
        }
    }
    assert through_gateway.headers[("X-Content-Type-Options", "nosniff")] == 1


def test_a_database_without_a_connection_to_give_is_a_503(
    catalog: dict[str, Any], django_app: CountingApplication
) -> None:
    PoolTimeout = pytest.importorskip("psycopg_pool").PoolTimeout

    def overloaded(request: HttpRequest) -> HttpResponse | None:
        raise PoolTimeout("no connection in time")

    gateway = LeanGateway(
        django_app, [Route(re.compile(re.escape(PRODUCT_LIST_URL)), overloaded, PRODUCT_LIST_URL)]
    )
    through_gateway = call(gateway, environ_for(PRODUCT_LIST_URL)())
    assert django_app.calls == 0
    assert through_gateway.status == "503 Service Unavailable"
    assert json.loads(through_gateway.body)["error"]["code"] == "service_busy"
    assert through_gateway.headers[("Retry-After", "2")] == 1


@pytest.fixture
def process_counts(monkeypatch: pytest.MonkeyPatch) -> collector.LocalCounts:
    """This process's dashboard counts, fresh and out of the flusher thread's reach."""
    collector._flusher_ensure()
    counts = collector.LocalCounts()
    monkeypatch.setattr(collector, "_local", counts)
    return counts


def _counted(counts: collector.LocalCounts) -> int:
    return sum(sum(second.requests.values()) for second in counts.take().values())


@lean_reads
def test_the_dashboard_counts_a_request_the_gateway_answered(
    catalog: dict[str, Any],
    gateway: LeanGateway,
    django_app: CountingApplication,
    process_counts: collector.LocalCounts,
) -> None:
    assert _counted(process_counts) == 0

    answer = call(gateway, environ_for(product_url(catalog["products"][0].pk))())

    assert answer.status == "200 OK"
    assert django_app.calls == 0
    assert _counted(process_counts) == 1


@lean_reads
def test_prometheus_counts_a_request_the_gateway_answered_under_its_route(
    catalog: dict[str, Any], gateway: LeanGateway, django_app: CountingApplication
) -> None:
    """The fast path is not invisible: counted with the pattern Django's path would name."""
    route = route_label(resolve(product_url(catalog["products"][0].pk)).route)
    labels = {"route": route, "method": "GET", "status": "200"}
    requests_before = sample("emporium_http_requests_total", **labels)
    queries_before = sample("emporium_http_request_db_queries_sum", route=route)

    answer = call(gateway, environ_for(product_url(catalog["products"][0].pk))())

    assert answer.status == "200 OK"
    assert django_app.calls == 0
    assert sample("emporium_http_requests_total", **labels) == requests_before + 1
    # The uncached read ran its statement, and the statement was counted.
    assert sample("emporium_http_request_db_queries_sum", route=route) > queries_before


@lean_reads
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("max_age", "closed"), [(0, True), (600, False)])
def test_the_connection_follows_conn_max_age_after_an_answered_request(
    max_age: int, closed: bool
) -> None:
    if getattr(connection, "is_in_memory_db", lambda: False)():
        pytest.skip("an in-memory SQLite database is never closed by Django")
    product = ProductFactory(category=CategoryFactory())
    counted = CountingApplication(django_application)
    gateway = LeanGateway(counted, gateway_routes())
    previous = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = max_age
    try:
        connection.close()  # the next connection takes the lifetime set above
        answer = call(gateway, environ_for(product_url(product.pk))())
        assert answer.status == "200 OK"
        assert counted.calls == 0
        assert (connection.connection is None) is closed
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = previous
        connection.close()
