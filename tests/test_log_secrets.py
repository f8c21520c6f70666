"""No secret reaches the logs: a whole sign-in, checkout and payment, logged at DEBUG.

Every line the process writes while a customer signs in (and once with a wrong
password), refreshes the token, fills a cart, checks out, pays against the
simulated provider, the relay and the payment task run, the provider's signed
callback arrives and the customer signs out, is captured as production renders
it. None of the secrets the flow handled may appear in it: the password, the
access and refresh tokens, the card token handed to the provider, the webhook
secret, the project's SECRET_KEY.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest
from celery import current_app
from django.conf import settings
from rest_framework.test import APIClient

from emporium.core.tests.factories import PASSWORD, ProductFactory, UserFactory
from emporium.integrations.relay import outbox_relay_pending
from emporium.observability.logging import REDACTED
from emporium.observability.tests.logs import logs_captured
from emporium.payments.gateway import provider_breaker
from emporium.payments.models import Payment, PaymentStatus
from simulators.payment_provider import SIGNATURE_HEADER, sign
from tests.support.processes import ProviderProcess

pytestmark = pytest.mark.django_db(transaction=True)

CARD_TOKEN = "tok_visa"
WRONG_PASSWORD = "not-the-password-Zq81x"


def test_a_whole_purchase_logs_no_secret(
    payment_provider: ProviderProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The payment task runs here, so its lines are captured with the rest.
    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    provider_breaker.cache_clear()
    user = UserFactory()
    product = ProductFactory(price=Decimal("31.00"), stock_quantity=4)
    client = APIClient()
    secrets: dict[str, str] = {
        "password": PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "card token": CARD_TOKEN,
        "webhook secret": settings.PAYMENT_WEBHOOK_SECRET,
        "SECRET_KEY": settings.SECRET_KEY,
    }

    with logs_captured() as logs:
        refused = client.post(
            "/api/auth/login/",
            {"username": user.username, "password": WRONG_PASSWORD},
            format="json",
        )
        signed_in = client.post(
            "/api/auth/login/", {"username": user.username, "password": PASSWORD}, format="json"
        ).json()
        refreshed = client.post(
            "/api/auth/refresh/", {"refresh": signed_in["refresh"]}, format="json"
        ).json()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed['access']}")
        client.post("/api/cart/items/", {"product": product.pk, "quantity": 1}, format="json")
        order_id = client.post("/api/orders/").json()["id"]
        paying = client.post(
            f"/api/orders/{order_id}/payments/",
            {"payment_method": "card", "token": CARD_TOKEN},
            format="json",
        )
        outbox_relay_pending()
        payment = Payment.objects.get(order_id=order_id)
        charge = payment_provider.charges_for(f"payment-{payment.pk}")[0]
        body = json.dumps(
            {"event_id": "evt_logs_1", "type": "charge.succeeded", "data": charge}
        ).encode()
        callback = APIClient().post(
            "/api/payments/webhook/",
            body,
            content_type="application/json",
            headers={
                SIGNATURE_HEADER: sign(settings.PAYMENT_WEBHOOK_SECRET, int(time.time()), body)
            },
        )
        signed_out = client.post(
            "/api/auth/logout/", {"refresh": refreshed["refresh"]}, format="json"
        )
        # A stolen token tried again after sign-out is refused, and logged as refused.
        replayed = APIClient().post(
            "/api/auth/refresh/", {"refresh": refreshed["refresh"]}, format="json"
        )

    assert refused.status_code in (400, 401)
    assert paying.status_code == 201, paying.content
    assert Payment.objects.get(pk=payment.pk).status == PaymentStatus.SUCCEEDED
    assert callback.status_code == 200, callback.content
    assert signed_out.status_code in (200, 204)
    assert replayed.status_code == 401
    secrets.update(
        {
            "first access token": signed_in["access"],
            "first refresh token": signed_in["refresh"],
            "access token": refreshed["access"],
            "refresh token": refreshed["refresh"],
        }
    )
    text = logs.text
    assert len(logs.access()) >= 9, text  # the flow was logged, at DEBUG
    leaked = sorted(name for name, value in secrets.items() if value and value in text)
    assert leaked == [], text


def test_sensitive_keys_are_masked_wherever_a_line_puts_them() -> None:
    import structlog

    log: Any = structlog.get_logger("emporium.tests")
    with logs_captured() as logs:
        log.info(
            "signed in",
            password="hunter2-secret",
            headers={"Authorization": "Bearer abc.def.ghi", "Accept": "application/json"},
            attempts=[{"token": "tok_secret_1"}],
        )
        log.warning("upstream said: Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl refused")

    first, second = logs.lines()
    assert first["password"] == REDACTED
    assert first["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert first["attempts"] == [{"token": REDACTED}]
    assert second["event"] == f"upstream said: {REDACTED} refused"
