"""Every route, every method its view answers, every role: the outcome the table declares.

The routes come from the URL conf (``tests.support.routes``), so a new route or
method fails ``test_the_table_names_every_route_and_method`` until someone
decides, here, who may use it. Ids point at objects of one customer (the
owner), who is none of the five callers: for a customer, another customer's
order must be 404, while support may read it and only admins may change it.

"ok" means the request went past authentication, permissions and ownership:
any answer but 401, 403, 404 or a 5xx (an empty body may well be a 400).
"""

from __future__ import annotations

import pytest
from django.db import transaction

from tests.support.routes import Route, api_routes
from tests.support.world import ROLES, World, build_world

pytestmark = pytest.mark.django_db

OK = "ok"
Row = tuple[
    object, object, object, object, object
]  # anonymous, customer, support, catalog_manager, admin

ANYONE: Row = (OK, OK, OK, OK, OK)
SIGNED_IN: Row = (401, OK, OK, OK, OK)
CATALOG_WRITE: Row = (401, 403, 403, OK, OK)
ADMIN_ONLY: Row = (401, 403, 403, 403, OK)
SUPPORT_READ: Row = (401, 403, OK, 403, OK)
# Another customer's order, payment or shipment: support reads it, admins change it.
OTHERS_READ: Row = (401, 404, OK, 404, OK)
OTHERS_CHANGE: Row = (401, 404, 404, 404, OK)
# Only the owner: another customer's cart line, wishlist line, or paying their order.
OWNER_ONLY: Row = (401, 404, 404, 404, 404)
DEVICES_ONLY: Row = (401, 401, 401, 401, 401)  # a courier device's token, never a person's

READS = "GET HEAD OPTIONS"

# The one table: route -> {"METHOD METHOD ...": outcome per role}.
EXPECTED: dict[str, dict[str, Row]] = {
    "/api/auth/jwks/": {READS: ANYONE},
    "/api/auth/login/": {"OPTIONS POST": ANYONE},
    "/api/auth/logout/": {"OPTIONS POST": ANYONE},
    "/api/auth/me/": {READS + " PATCH": SIGNED_IN},
    "/api/auth/refresh/": {"OPTIONS POST": ANYONE},
    "/api/auth/register/": {"OPTIONS POST": ANYONE},
    "/api/cart/": {READS + " DELETE": SIGNED_IN},
    "/api/cart/items/": {READS + " POST": SIGNED_IN},
    "/api/cart/items/{pk}/": {"GET HEAD PATCH DELETE": OWNER_ONLY, "OPTIONS": SIGNED_IN},
    "/api/categories/": {READS: ANYONE, "POST": CATALOG_WRITE},
    "/api/categories/{pk}/": {READS: ANYONE, "PATCH DELETE": CATALOG_WRITE},
    "/api/devices/": {READS + " POST": ADMIN_ONLY},
    "/api/devices/{pk}/": {READS: ADMIN_ONLY},
    "/api/devices/{pk}/revoke/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/devices/{pk}/rotate-token/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/docs/": {"GET HEAD": ANYONE},
    "/api/notifications/": {READS: SIGNED_IN},
    "/api/notifications/{pk}/read/": {"POST": OWNER_ONLY, "OPTIONS": SIGNED_IN},
    "/api/notifications/broadcasts/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/notifications/broadcasts/{pk}/": {READS: ADMIN_ONLY},
    "/api/notifications/broadcasts/{pk}/cancel/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/notifications/preferences/": {READS + " PUT": SIGNED_IN},
    "/api/notifications/read-all/": {"OPTIONS POST": SIGNED_IN},
    "/api/notifications/unread-count/": {READS: SIGNED_IN},
    "/api/notifications/dead-letters/": {READS: ADMIN_ONLY},
    "/api/notifications/dead-letters/replay/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/notifications/dead-letters/{pk}/replay/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/notifications/devices/": {READS + " POST DELETE": SIGNED_IN},
    "/api/orders/": {READS + " POST": SIGNED_IN},
    "/api/orders/events/": {READS: SIGNED_IN},
    "/api/orders/{order_pk}/payments/": {"POST": OWNER_ONLY, "OPTIONS": SIGNED_IN},
    "/api/orders/{pk}/": {"GET HEAD": OTHERS_READ, "OPTIONS": SIGNED_IN},
    "/api/orders/{pk}/cancel/": {"POST": OTHERS_CHANGE, "OPTIONS": SIGNED_IN},
    "/api/orders/{pk}/deliver/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/orders/{pk}/history/": {"GET HEAD": OTHERS_READ, "OPTIONS": SIGNED_IN},
    "/api/orders/{pk}/ship/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/payments/": {READS: SIGNED_IN},
    "/api/payments/webhook/": {"OPTIONS POST": ANYONE},
    "/api/payments/{pk}/": {"GET HEAD": OTHERS_READ, "OPTIONS": SIGNED_IN},
    "/api/products/": {READS: ANYONE, "POST": CATALOG_WRITE},
    "/api/products/{pk}/": {READS: ANYONE, "PATCH DELETE": CATALOG_WRITE},
    "/api/products/imports/": {"POST": CATALOG_WRITE, "OPTIONS": SIGNED_IN},
    "/api/products/imports/{pk}/": {READS: CATALOG_WRITE},
    "/api/products/imports/{pk}/cancel/": {"POST": CATALOG_WRITE, "OPTIONS": SIGNED_IN},
    "/api/products/imports/{pk}/errors.csv": {READS: CATALOG_WRITE},
    "/api/products/{product_pk}/reviews/": {READS: ANYONE, "POST": SIGNED_IN},
    "/api/products/{product_pk}/reviews/{pk}/": {READS: ANYONE, "PATCH DELETE": OTHERS_CHANGE},
    "/api/schema/": {READS: ANYONE},
    "/api/search/": {READS: ANYONE},
    "/api/search/suggest/": {READS: ANYONE},
    "/api/shipments/": {READS: SIGNED_IN, "POST": ADMIN_ONLY},
    "/api/shipments/{pk}/": {"GET HEAD": OTHERS_READ, "OPTIONS": SIGNED_IN},
    "/api/shipments/{pk}/deliver/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/shipments/{pk}/start/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/shipments/{pk}/track/": {"GET HEAD": OTHERS_READ, "OPTIONS": SIGNED_IN},
    "/api/telemetry/": {"OPTIONS POST": DEVICES_ONLY},
    "/api/telemetry/latest/": {READS: ADMIN_ONLY},
    "/api/telemetry/summary/": {READS: ADMIN_ONLY},
    "/api/users/": {READS: SUPPORT_READ},
    "/api/users/{pk}/": {READS: SUPPORT_READ, "PATCH": ADMIN_ONLY},
    "/api/wishlist/": {READS: SIGNED_IN},
    "/api/wishlist/items/": {READS + " POST": SIGNED_IN},
    "/api/wishlist/items/{pk}/": {"GET HEAD DELETE": OWNER_ONLY, "OPTIONS": SIGNED_IN},
    "/api/webhooks/": {READS + " POST": ADMIN_ONLY},
    "/api/webhooks/{pk}/": {READS + " PUT PATCH DELETE": ADMIN_ONLY},
    "/api/webhooks/{pk}/rotate-secret/": {"POST": ADMIN_ONLY, "OPTIONS": SIGNED_IN},
    "/api/webhooks/{webhooksubscription_pk}/deliveries/": {READS: ADMIN_ONLY},
    "/api/webhooks/{webhooksubscription_pk}/deliveries/{webhookdelivery_pk}/replay/": {
        "POST": ADMIN_ONLY,
        "OPTIONS": SIGNED_IN,
    },
}


def _expanded() -> dict[tuple[str, str], Row]:
    table: dict[tuple[str, str], Row] = {}
    for template, rows in EXPECTED.items():
        for methods, row in rows.items():
            for method in methods.split():
                assert (template, method) not in table, f"{template} {method} is declared twice"
                table[(template, method)] = row
    return table


TABLE = _expanded()
ROUTE_METHODS = [(route, method) for route in api_routes() for method in route.sorted_methods()]


def outcome(status: int) -> object:
    if status >= 500:
        return f"server error {status}"
    return status if status in (401, 403, 404) else OK


def test_the_table_names_every_route_and_method() -> None:
    served = {(str(route), method) for route, method in ROUTE_METHODS}

    assert sorted(served - TABLE.keys()) == [], "routes the table does not name"
    assert sorted(TABLE.keys() - served) == [], "the table names routes the URL conf lacks"


@pytest.mark.parametrize(
    ("route", "method"), ROUTE_METHODS, ids=[f"{method} {route}" for route, method in ROUTE_METHODS]
)
def test_every_role_gets_what_the_table_declares(route: Route, method: str) -> None:
    expected = TABLE.get((str(route), method))
    if expected is None:
        pytest.fail(f"{method} {route} is not in the table of expectations")
    world: World = build_world()
    url = world.url(route)

    seen = []
    for role in ROLES:
        with transaction.atomic():  # each role meets the same world
            body = "{}" if method in ("POST", "PUT", "PATCH") else None
            response = world.client(role).generic(
                method, url, body or "", content_type="application/json"
            )
            transaction.set_rollback(True)
        seen.append(outcome(response.status_code))

    assert dict(zip(ROLES, seen, strict=True)) == dict(zip(ROLES, expected, strict=True))
