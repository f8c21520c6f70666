"""The Idempotency-Key layer, exercised through the endpoints that use it.

Checkout (POST /api/orders/) and starting a payment
(POST /api/orders/<id>/payments/) both go through ``core.idempotency``.
Concurrent twins are covered in ``orders/tests/test_checkout_concurrency.py``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.catalog.models import Product
from emporium.core import tasks
from emporium.core.idempotency import REPLAY_HEADER, idempotency_keys_purge
from emporium.core.models import IdempotencyKey
from emporium.core.tests.factories import OrderFactory, ProductFactory, UserFactory, client_for
from emporium.integrations.models import OutboxEvent
from emporium.orders import services as order_services
from emporium.orders.models import Order
from emporium.orders.tests.support import (
    ORDERS_URL,
    cart_fill,
    cart_lines,
    database_state,
    error_of,
    order_url,
    stock_of,
)
from emporium.payments.models import Payment

pytestmark = pytest.mark.django_db

KEY = "6a1f0c3e-checkout-attempt"


@pytest.fixture
def customer() -> User:
    return UserFactory()


@pytest.fixture
def client(customer: User) -> APIClient:
    return client_for(customer)


@pytest.fixture
def product() -> Product:
    return ProductFactory(price=Decimal("12.50"), stock_quantity=10)


@pytest.fixture
def filled_cart(customer: User, product: Product) -> None:
    cart_fill(customer, [(product, 2)])


def checkout(client: APIClient, key: str | None = KEY, **kwargs: Any) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(ORDERS_URL, **kwargs, **headers)


# -- the key itself --------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", "   ", "k" * 256, "bell\x07key", "tab\tkey", "cl\u00e9"],
    ids=["empty", "blank", "256-characters", "control-character", "tab", "non-ascii"],
)
@pytest.mark.usefixtures("filled_cart")
def test_malformed_key_is_rejected_and_nothing_is_written(client: APIClient, key: str) -> None:
    before = database_state()

    response = checkout(client, key)

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "idempotency_key_invalid",
            "message": "The Idempotency-Key header must be 1 to 255 printable ASCII characters.",
            "details": {},
        }
    }
    assert database_state() == before


@pytest.mark.usefixtures("filled_cart")
def test_key_of_255_characters_is_accepted_and_stored(
    customer: User, client: APIClient, settings: Any
) -> None:
    key = "k" * 255
    before = timezone.now()

    response = checkout(client, key)

    after = timezone.now()
    assert response.status_code == 201
    stored = IdempotencyKey.objects.get()
    assert (stored.user_id, stored.key, stored.response_status) == (customer.pk, key, 201)
    assert bytes(stored.response_body) == response.content
    assert stored.completed_at is not None
    # Kept at least as long as the configured TTL (24 hours by default).
    ttl = timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)
    assert ttl >= timedelta(hours=24)
    assert before + ttl <= stored.expires_at <= after + ttl


def test_anonymous_request_with_a_key_is_unauthorised_and_stores_nothing(
    filled_cart: None,
) -> None:
    before = database_state()

    response = checkout(APIClient())

    assert response.status_code == 401
    assert database_state() == before


# -- replays ---------------------------------------------------------------------


@pytest.mark.usefixtures("filled_cart")
def test_same_key_and_body_replay_the_first_response_byte_for_byte(
    customer: User, client: APIClient, product: Product
) -> None:
    first = checkout(client)
    second = checkout(client)
    third = checkout(client_for(customer))  # another session of the same user

    assert first.status_code == 201
    assert REPLAY_HEADER not in first.headers
    for retry in (second, third):
        assert retry.status_code == 201
        assert retry.content == first.content
        assert retry.headers[REPLAY_HEADER] == "true"
        assert retry.headers["Content-Type"] == "application/json"
    assert Order.objects.count() == 1
    assert Order.objects.get().pk == first.json()["id"]
    assert stock_of(product) == 8
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.usefixtures("filled_cart")
def test_same_key_with_a_different_body_is_refused(client: APIClient) -> None:
    first = checkout(client, data={"note": "leave at the door"}, format="json")
    before = database_state()

    second = checkout(client, data={"note": "ring twice"}, format="json")

    assert first.status_code == 201
    assert second.status_code == 422
    assert second.json() == {
        "error": {
            "code": "idempotency_key_reused",
            "message": "This Idempotency-Key was already used with a different request.",
            "details": {},
        }
    }
    assert database_state() == before


@pytest.mark.usefixtures("filled_cart")
def test_same_key_on_another_endpoint_is_refused(customer: User, client: APIClient) -> None:
    placed = checkout(client)
    before = database_state()

    payment = client.post(
        order_url(placed.json()["id"], "payments"),
        {"payment_method": "card", "token": "tok_visa"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=KEY,
    )

    assert payment.status_code == 422
    assert error_of(payment)["code"] == "idempotency_key_reused"
    assert database_state() == before


def test_another_users_key_does_not_replay(product: Product) -> None:
    first_user, second_user, third_user = UserFactory.create_batch(3)
    cart_fill(first_user, [(product, 1)])
    cart_fill(second_user, [(product, 3)])

    first = checkout(client_for(first_user))
    second = checkout(client_for(second_user))
    third = checkout(client_for(third_user))  # same key, empty cart

    assert first.status_code == 201
    assert second.status_code == 201
    assert REPLAY_HEADER not in second.headers
    assert second.json()["id"] != first.json()["id"]
    assert (second.json()["user"], second.json()["items"][0]["quantity"]) == (second_user.pk, 3)
    assert third.status_code == 409
    assert REPLAY_HEADER not in third.headers
    assert error_of(third)["code"] == "cart_empty"
    assert sorted(Order.objects.values_list("user_id", flat=True)) == sorted(
        [first_user.pk, second_user.pk]
    )
    assert stock_of(product) == 6
    assert sorted(IdempotencyKey.objects.values_list("user_id", "key", "response_status")) == [
        (first_user.pk, KEY, 201),
        (second_user.pk, KEY, 201),
        (third_user.pk, KEY, 409),
    ]


def test_a_completed_conflict_is_stored_and_replayed(customer: User, client: APIClient) -> None:
    product = ProductFactory(stock_quantity=5)
    cart_fill(customer, [(product, 3)])
    Product.objects.filter(pk=product.pk).update(stock_quantity=2)

    refused = checkout(client)
    Product.objects.filter(pk=product.pk).update(stock_quantity=10)  # restocked meanwhile
    replayed = checkout(client)

    assert refused.status_code == 409
    assert error_of(refused)["code"] == "insufficient_stock"
    assert replayed.status_code == 409
    assert replayed.content == refused.content
    assert replayed.headers[REPLAY_HEADER] == "true"
    assert not Order.objects.exists()
    assert stock_of(product) == 10
    assert cart_lines(customer) == [(product.pk, 3)]
    # Only a new key runs checkout again.
    assert checkout(client, "a-fresh-key").status_code == 201


@pytest.mark.usefixtures("filled_cart")
def test_a_server_error_releases_the_key(
    customer: User, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(**kwargs: Any) -> Order:
        raise RuntimeError("the checkout crashed")

    client = client_for(customer)
    client.raise_request_exception = False
    before = database_state()
    monkeypatch.setattr(order_services, "order_place", crash)

    failed = checkout(client)

    assert failed.status_code == 500
    assert error_of(failed)["code"] == "internal_error"
    assert database_state() == before  # no key kept, so the retry below really runs

    monkeypatch.undo()
    retried = checkout(client)

    assert retried.status_code == 201
    assert REPLAY_HEADER not in retried.headers
    assert Order.objects.get().pk == retried.json()["id"]
    assert stock_of(product) == 8
    assert IdempotencyKey.objects.get().response_status == 201


# -- in flight, expiry, purge ----------------------------------------------------


def _rewind_to_in_flight(*, locked_until: Any) -> None:
    """Makes the stored key look like a first attempt that is still running."""
    IdempotencyKey.objects.update(
        completed_at=None,
        response_status=None,
        response_body=None,
        response_content_type="",
        locked_until=locked_until,
    )


def test_in_flight_key_is_a_conflict_until_its_lock_runs_out(
    customer: User, client: APIClient, product: Product
) -> None:
    # A first attempt on an empty cart stores the key with this request's fingerprint.
    assert checkout(client).status_code == 409
    cart_fill(customer, [(product, 2)])
    _rewind_to_in_flight(locked_until=timezone.now() + timedelta(seconds=30))
    before = database_state()

    busy = checkout(client)
    changed_body = checkout(client, data={"other": "body"}, format="json")

    assert busy.status_code == 409
    assert busy.json() == {
        "error": {
            "code": "idempotency_in_progress",
            "message": "A request with this Idempotency-Key is still being processed; retry later.",
            "details": {},
        }
    }
    assert changed_body.status_code == 422
    assert database_state() == before

    # The first attempt died (its lock ran out): a retry takes the key over.
    _rewind_to_in_flight(locked_until=timezone.now() - timedelta(seconds=1))
    taken_over = checkout(client)
    replayed = checkout(client)

    assert taken_over.status_code == 201
    assert REPLAY_HEADER not in taken_over.headers
    assert Order.objects.get().pk == taken_over.json()["id"]
    assert stock_of(product) == 8
    assert (replayed.status_code, replayed.content) == (201, taken_over.content)
    stored = IdempotencyKey.objects.get()
    assert (stored.response_status, bytes(stored.response_body)) == (201, taken_over.content)


def test_expired_key_is_not_replayed(customer: User, client: APIClient, product: Product) -> None:
    cart_fill(customer, [(product, 1)])
    first = checkout(client)
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    cart_fill(customer, [(product, 2)])

    second = checkout(client)

    assert first.status_code == second.status_code == 201
    assert REPLAY_HEADER not in second.headers
    assert second.json()["id"] != first.json()["id"]
    assert Order.objects.count() == 2
    assert stock_of(product) == 7
    stored = IdempotencyKey.objects.get()
    assert bytes(stored.response_body) == second.content
    assert stored.expires_at > timezone.now() + timedelta(hours=23)


def test_purge_deletes_exactly_the_expired_keys(customer: User, client: APIClient) -> None:
    for key in ("expired-long-ago", "expired-just-now", "still-valid", "valid-for-long"):
        assert checkout(client, key).status_code == 409  # empty cart; the answer is stored
    other_user = UserFactory()
    assert checkout(client_for(other_user), "expired-long-ago").status_code == 409
    now = timezone.now()
    expiry = {
        "expired-long-ago": now - timedelta(days=2),
        "expired-just-now": now - timedelta(seconds=1),
        "still-valid": now + timedelta(seconds=5),
        "valid-for-long": now + timedelta(hours=23),
    }
    for key, expires_at in expiry.items():
        IdempotencyKey.objects.filter(user=customer, key=key).update(expires_at=expires_at)

    deleted = tasks.idempotency_keys_purge()
    again = tasks.idempotency_keys_purge()

    assert (deleted, again) == (2, 0)
    assert sorted(IdempotencyKey.objects.values_list("user_id", "key")) == sorted(
        [
            (customer.pk, "still-valid"),
            (customer.pk, "valid-for-long"),
            (other_user.pk, "expired-long-ago"),  # same key, another user, not expired
        ]
    )


def test_purge_boundary_is_inclusive(customer: User, client: APIClient) -> None:
    checkout(client, "at-the-boundary")
    checkout(client, "just-after")
    moment = timezone.now() + timedelta(hours=1)
    IdempotencyKey.objects.filter(key="at-the-boundary").update(expires_at=moment)
    IdempotencyKey.objects.filter(key="just-after").update(
        expires_at=moment + timedelta(microseconds=1)
    )

    assert idempotency_keys_purge(now=moment) == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["just-after"]


# -- starting a payment ----------------------------------------------------------


def test_payment_start_is_idempotent(
    customer: User, client: APIClient, payment_provider: Any
) -> None:
    order = OrderFactory(user=customer, total_amount=Decimal("25.00"))
    url = order_url(order.pk, "payments")
    body = {"payment_method": "card", "token": "tok_visa"}

    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=KEY)
    retry = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=KEY)
    other_method = client.post(
        url, {**body, "payment_method": "paypal"}, format="json", HTTP_IDEMPOTENCY_KEY=KEY
    )
    without_key = client.post(url, body, format="json")

    assert first.status_code == 201
    assert json.loads(first.content)["status"] == "pending"
    assert (retry.status_code, retry.content) == (201, first.content)
    assert retry.headers[REPLAY_HEADER] == "true"
    assert other_method.status_code == 422
    assert error_of(other_method)["code"] == "idempotency_key_reused"
    # Without the key a second start is new work, and the order already has a payment.
    assert without_key.status_code == 409
    assert error_of(without_key)["code"] == "payment_not_allowed"
    payment = Payment.objects.get()
    assert (payment.pk, payment.order_id, payment.amount, payment.status) == (
        first.json()["id"],
        order.pk,
        Decimal("25.00"),
        "pending",
    )
    assert OutboxEvent.objects.filter(event_type="payment.requested").count() == 1
    assert IdempotencyKey.objects.get().response_status == 201
