"""A malformed Authorization header on checkout is the DRF path's 401, never a crash.

Checkout reads the Bearer token itself before DRF's dispatch; a header that
simplejwt refuses outright ("Bearer" with no token, or with several values)
must leave the answer to DRF's authentication.
"""

from __future__ import annotations

import pytest
from django.test import Client

from emporium.orders.models import Order

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("header", ["Bearer ", "Bearer", "Bearer a b"])
def test_a_malformed_bearer_header_on_checkout_is_401(header: str) -> None:
    response = Client().post("/api/orders/", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert Order.objects.count() == 0
