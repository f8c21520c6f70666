"""Another account's object is answered like a missing one, and nothing changes.

Every route of the URL conf with an id in its path is swept (a new one is
covered without being listed): its objects belong to a customer, A; a second
account, B, tries every method the view answers with A's id and with an id no
row has. Both answers must be the same refusal (404, or 403 where B may not use
the route at all), byte for byte, and the database must be exactly as before.
B is another customer, then a catalog manager (a staff role that sees no
customer's data).

Only ids of the catalog are left out: categories, products and the reviews
shown under a product belong to no customer and are public to read.
"""

from __future__ import annotations

import json

import pytest

from tests.support.routes import Route, api_routes
from tests.support.world import MISSING_ID, World, build_world, database_snapshot, param_models

pytestmark = pytest.mark.django_db

# Ids that name objects nobody owns: reading them is public, writing them is a
# catalog manager's job (both checked by the role matrix).
UNOWNED = {
    "/api/categories/{pk}/",
    "/api/products/{pk}/",
    "/api/products/{product_pk}/reviews/",
    # Catalog imports are the catalog managers' shared work, not a customer's.
    "/api/products/imports/{pk}/",
    "/api/products/imports/{pk}/cancel/",
    "/api/products/imports/{pk}/errors.csv",
}
PUBLIC_READS = {("/api/products/{product_pk}/reviews/{pk}/", method) for method in ("GET", "HEAD")}

# One body that any write on these routes would accept; unknown fields are ignored.
ATTACK_BODY = {
    "quantity": 3,
    "rating": 1,
    "comment": "B was here",
    "first_name": "Mallory",
    "is_active": False,
    "reason": "B cancels",
    "payment_method": "card",
    "token": "tok_bola",
}

SWEPT = [
    (route, method)
    for route in api_routes()
    if route.params and str(route) not in UNOWNED
    for method in route.sorted_methods()
    if method != "OPTIONS" and (str(route), method) not in PUBLIC_READS
]


def _missing_url(world: World, route: Route) -> str:
    """A's url with its last id (the object's own) replaced by one no row has."""
    url = world.url(route)
    owned = str(world.objects[list(param_models(route).values())[-1]].pk)
    head, _, tail = url.rpartition(f"/{owned}/")
    return f"{head}/{MISSING_ID}/{tail}"


def test_the_sweep_covers_every_owned_object_route() -> None:
    swept = {str(route) for route, _ in SWEPT}

    assert {
        "/api/orders/{pk}/",
        "/api/orders/{pk}/cancel/",
        "/api/orders/{order_pk}/payments/",
        "/api/payments/{pk}/",
        "/api/shipments/{pk}/track/",
        "/api/cart/items/{pk}/",
        "/api/wishlist/items/{pk}/",
        "/api/products/{product_pk}/reviews/{pk}/",
        "/api/users/{pk}/",
        "/api/devices/{pk}/revoke/",
    } <= swept


@pytest.mark.parametrize("intruder", ["customer", "catalog_manager"])
@pytest.mark.parametrize(
    ("route", "method"), SWEPT, ids=[f"{method} {route}" for route, method in SWEPT]
)
def test_another_accounts_object_is_like_a_missing_one(
    route: Route, method: str, intruder: str
) -> None:
    world = build_world()
    client = world.client(intruder)
    body = ATTACK_BODY if method in ("POST", "PUT", "PATCH") else None
    before = database_snapshot()

    answers = []
    for url in (world.url(route), _missing_url(world, route)):
        response = client.generic(
            method, url, "" if body is None else json.dumps(body), content_type="application/json"
        )
        answers.append((response.status_code, response.content))

    theirs, missing = answers
    assert theirs[0] in (403, 404), theirs
    assert theirs == missing
    assert database_snapshot() == before
