"""Ids no row can have, in the path: a 404 (or 400), never a 500 such as "bigint out of range".

Every API route with an id in its path is swept (the list comes from the URL
conf), with every method it answers, as anonymous, as a customer who owns
objects of every kind, and as an admin. On PostgreSQL a value past bigint used
to reach raw SQL on the lean catalog read and fail there.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from emporium.core.selectors import ID_MAX
from emporium.core.tests.factories import ProductFactory, client_for
from tests.support.routes import Route, api_routes
from tests.support.world import build_world

OUT_OF_RANGE = [2**63, -1, 0, 99999999999999999999999]
ROUTES_WITH_IDS = [route for route in api_routes() if route.params]
NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "details": {}}}


def test_the_sweep_sees_the_routes_with_ids() -> None:
    swept = {str(route) for route in ROUTES_WITH_IDS}

    assert {
        "/api/products/{pk}/",
        "/api/categories/{pk}/",
        "/api/orders/{pk}/",
        "/api/products/{product_pk}/reviews/{pk}/",
        "/api/orders/{order_pk}/payments/",
    } <= swept


@pytest.mark.django_db
@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=str)
@pytest.mark.parametrize("route", ROUTES_WITH_IDS, ids=str)
def test_an_id_no_row_can_have_is_not_found(route: Route, value: int) -> None:
    world = build_world()
    clients: dict[str, APIClient] = {
        "anonymous": APIClient(),
        "owner": client_for(world.owner),
        "admin": world.client("admin"),
    }
    path = route.path(value)
    for role, client in clients.items():
        for method in route.sorted_methods():
            response: Any = client.generic(method, path, "{}", content_type="application/json")

            assert response.status_code < 500, (role, method, response.content[:300])
            if role == "admin" and method not in ("OPTIONS", "HEAD"):
                assert response.status_code in (400, 404), (method, response.content[:300])


@pytest.mark.django_db
@pytest.mark.parametrize("value", [ID_MAX + 1, 99999999999999999999999])
def test_the_lean_product_read_answers_404_past_bigint(value: int) -> None:
    response = APIClient().get(f"/api/products/{value}/")

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


@pytest.mark.django_db
def test_the_lean_product_read_still_answers_a_real_id() -> None:
    product = ProductFactory()

    response = APIClient().get(f"/api/products/{product.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == product.pk


@pytest.mark.django_db
@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=str)
def test_the_product_page_answers_404(value: int) -> None:
    response = APIClient().get(f"/products/{value}/")

    assert response.status_code == 404
