"""Signed-in reads through the lean gateway against Django's own handler, byte for byte.

With a valid Bearer token the gateway answers the product reads (their answer does
not depend on the user) and the customer's own reads: the profile, the cart, the
wishlist, the first page of their orders and one of their orders. Each answer
must be the one Django's handler (DRF, the serializers) gives for the same
request, status, headers and body; the reads not taken (another user's order,
a staff account's orders, a cursor, no token, a refused token) must reach Django
unchanged. The statements each answer costs are pinned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from rest_framework_simplejwt.tokens import RefreshToken

from config.wsgi import django_application, lean_gateway
from emporium.accounts import services as account_services
from emporium.carts.services import cart_item_add
from emporium.core.gateway import LeanGateway
from emporium.core.tests.factories import (
    OrderFactory,
    OrderItemFactory,
    ProductFactory,
    UserFactory,
)
from emporium.core.tests.test_gateway import CountingApplication, call, environ_for
from emporium.wishlists.services import wishlist_item_add

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        "connection.vendor != 'postgresql'", reason="the lean reads need PostgreSQL"
    ),
]


@pytest.fixture
def django_app() -> Iterator[CountingApplication]:
    # As Django's test client does: a request must not close the test's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield CountingApplication(django_application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def gateway(django_app: CountingApplication) -> LeanGateway:
    return lean_gateway(django_app)


def bearer(user: Any) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {RefreshToken.for_user(user).access_token}"}


@pytest.fixture
def shopper() -> Any:
    """A customer with a cart of two lines, a wishlist of two, and 23 orders (two pages)."""
    customer = UserFactory(first_name="Zoë", last_name="\u2028Line")
    products = [ProductFactory(name=f'Lamp "{n}" ü', stock_quantity=50) for n in range(3)]
    cart_item_add(user=customer, product=products[0], quantity=2)
    cart_item_add(user=customer, product=products[1], quantity=1)
    wishlist_item_add(user=customer, product=products[1])
    wishlist_item_add(user=customer, product=products[2])
    orders = []
    for number in range(23):
        order = OrderFactory(user=customer)
        if number == 3:
            order.shipping_address = "1 Bench Street\nBerlin"
            order.phone = "+4930123456"
            order.save()
        for product in products[: 1 + number % 2]:
            OrderItemFactory(order=order, product=product)
        orders.append(order)
    return {"user": customer, "products": products, "orders": orders}


def _answered_as_django(
    gateway: LeanGateway, django_app: CountingApplication, path: str, headers: dict[str, str]
) -> Any:
    make = environ_for(path, **headers)
    call(gateway, make())  # the first read of the account's state
    django_app.calls = 0
    lean = call(gateway, make())
    assert django_app.calls == 0, path  # answered in front of Django
    full = call(django_application, make())
    assert lean == full, path
    assert lean.status == "200 OK"
    return json.loads(lean.body)


def test_the_customers_own_reads_are_answered_as_django_answers_them(
    shopper: dict[str, Any], gateway: LeanGateway, django_app: CountingApplication
) -> None:
    headers = bearer(shopper["user"])
    orders = shopper["orders"]

    me = _answered_as_django(gateway, django_app, "/api/auth/me/", headers)
    cart = _answered_as_django(gateway, django_app, "/api/cart/", headers)
    wishlist = _answered_as_django(gateway, django_app, "/api/wishlist/", headers)
    page = _answered_as_django(gateway, django_app, "/api/orders/", headers)
    sealed = _answered_as_django(gateway, django_app, f"/api/orders/{orders[3].pk}/", headers)

    assert me["id"] == shopper["user"].pk
    assert me["last_name"] == "\u2028Line"
    assert [line["quantity"] for line in cart["items"]] == [2, 1]
    assert cart["item_count"] == 3
    assert len(wishlist["items"]) == 2
    assert len(page["results"]) == 20
    assert page["next"] is not None
    assert page["previous"] is None
    assert sealed["shipping_address"] == "1 Bench Street\nBerlin"
    assert sealed["phone"] == "+4930123456"


def test_the_next_link_of_the_fast_first_page_leads_where_djangos_does(
    shopper: dict[str, Any], gateway: LeanGateway
) -> None:
    headers = bearer(shopper["user"])
    first = json.loads(call(gateway, environ_for("/api/orders/", **headers)()).body)
    path = first["next"].split("testserver", 1)[1]

    second = json.loads(call(gateway, environ_for(path, **headers)()).body)

    ids = [order["id"] for order in first["results"] + second["results"]]
    assert ids == [order.pk for order in reversed(shopper["orders"])]


def test_product_reads_with_a_token_are_answered_as_without_one(
    shopper: dict[str, Any], gateway: LeanGateway, django_app: CountingApplication
) -> None:
    headers = bearer(shopper["user"])
    for path in ("/api/products/", f"/api/products/{shopper['products'][0].pk}/"):
        body = _answered_as_django(gateway, django_app, path, headers)
        anonymous = call(gateway, environ_for(path)())
        assert json.loads(anonymous.body) == body


def _handed_over(
    gateway: LeanGateway, django_app: CountingApplication, path: str, headers: dict[str, str]
) -> str:
    make = environ_for(path, **headers)
    django_app.calls = 0
    through = call(gateway, make())
    assert django_app.calls == 1, path
    assert through == call(django_application, make())
    return through.status


def test_reads_the_gateway_does_not_take_reach_django_unchanged(
    shopper: dict[str, Any], gateway: LeanGateway, django_app: CountingApplication
) -> None:
    headers = bearer(shopper["user"])
    other = UserFactory()
    others_order = OrderFactory(user=other)

    assert _handed_over(gateway, django_app, "/api/cart/", {}) == "401 Unauthorized"
    bad = {"HTTP_AUTHORIZATION": "Bearer not-a-token"}
    assert _handed_over(gateway, django_app, "/api/orders/", bad) == "401 Unauthorized"
    assert _handed_over(gateway, django_app, "/api/products/", bad) == "401 Unauthorized"
    path = f"/api/orders/{others_order.pk}/"
    assert _handed_over(gateway, django_app, path, headers) == "404 Not Found"
    assert _handed_over(gateway, django_app, "/api/orders/?page_size=5", headers) == "200 OK"
    assert _handed_over(gateway, django_app, "/api/cart/?format=json", headers) == "200 OK"
    # A first read of the cart creates it: DRF's path.
    assert _handed_over(gateway, django_app, "/api/cart/", bearer(other)) == "200 OK"
    assert _handed_over(gateway, django_app, "/api/wishlist/", bearer(other)) == "200 OK"


def test_an_account_that_sees_every_order_takes_djangos_path(
    shopper: dict[str, Any], gateway: LeanGateway, django_app: CountingApplication
) -> None:
    support = UserFactory()
    support.groups.add(Group.objects.get(name="support"))

    assert _handed_over(gateway, django_app, "/api/orders/", bearer(support)) == "200 OK"


def test_a_deactivated_account_is_refused_by_the_gateways_next_read(
    shopper: dict[str, Any],
    gateway: LeanGateway,
    django_app: CountingApplication,
    django_capture_on_commit_callbacks: Any,
) -> None:
    headers = bearer(shopper["user"])
    assert call(gateway, environ_for("/api/cart/", **headers)()).status == "200 OK"
    admin = UserFactory(is_superuser=True, is_staff=True)

    with django_capture_on_commit_callbacks(execute=True):
        account_services.user_update_by_admin(actor=admin, user=shopper["user"], is_active=False)

    assert _handed_over(gateway, django_app, "/api/cart/", headers) == "401 Unauthorized"
    assert _handed_over(gateway, django_app, "/api/products/", headers) == "401 Unauthorized"


@pytest.mark.parametrize(
    "path",
    ["/api/auth/me/", "/api/cart/", "/api/wishlist/", "/api/orders/", "order"],
)
def test_each_fast_read_is_one_statement(
    shopper: dict[str, Any], gateway: LeanGateway, path: str, django_assert_num_queries: Any
) -> None:
    if path == "order":
        path = f"/api/orders/{shopper['orders'][0].pk}/"
    make = environ_for(path, **bearer(shopper["user"]))
    call(gateway, make())  # reads the account's state (two statements) and keeps it

    with django_assert_num_queries(1):
        assert call(gateway, make()).status == "200 OK"
    assert connection.vendor == "postgresql"
