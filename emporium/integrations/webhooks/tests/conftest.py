from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from emporium.integrations.models import OutboxEvent
from emporium.integrations.webhooks import services
from emporium.integrations.webhooks.models import DeliveryStatus, WebhookDelivery

# Retries and breakers in fractions of a second, so the tests wait little.
FAST = {
    "WEBHOOKS_RETRY_BASE_SECONDS": 0.05,
    "WEBHOOKS_RETRY_CAP_SECONDS": 0.2,
    "WEBHOOKS_TIMEOUT_SECONDS": 0.5,
    "WEBHOOKS_CONNECT_TIMEOUT_SECONDS": 0.5,
    "WEBHOOKS_BREAKER_RESET_SECONDS": 1,
}
# What production enforces (the test settings, like the embedded profile, relax it).
PRODUCTION_TARGETS = {"WEBHOOKS_REQUIRE_HTTPS": True, "WEBHOOKS_ALLOW_PRIVATE_TARGETS": False}


@pytest.fixture
def fast_retries() -> Iterator[None]:
    with override_settings(**FAST):
        yield


def event_new(
    event_type: str = "order.paid",
    *,
    aggregate_id: object = 1,
    payload: dict[str, Any] | None = None,
    request_id: str = "",
) -> OutboxEvent:
    """An outbox row as event_record writes it (without arranging the relay after commit)."""
    return OutboxEvent.objects.create(
        id=uuid.uuid4(),
        event_type=event_type,
        aggregate_type="order",
        aggregate_id=str(aggregate_id),
        payload=payload or {"order_id": aggregate_id},
        correlation={"request_id": request_id} if request_id else {},
    )


def deliveries_for(event: OutboxEvent) -> list[int]:
    return services.deliveries_create_for_event(event=event)


def send_all(*, timeout: float = 15.0, parallel: int = 1) -> list[services.Outcome]:
    """Sends due deliveries, as the workers would, until none is pending (or ``timeout``).

    With ``parallel`` > 1 (PostgreSQL only) several senders race for the same rows.
    """
    outcomes: list[services.Outcome] = []
    deadline = time.monotonic() + timeout
    pool = ThreadPoolExecutor(parallel) if parallel > 1 else None

    def attempt(delivery_id: int) -> services.Outcome:
        try:
            return services.delivery_attempt(delivery_id=delivery_id).outcome
        finally:
            if pool is not None:
                connection.close()

    try:
        while time.monotonic() < deadline:
            if not WebhookDelivery.objects.filter(
                status=DeliveryStatus.PENDING, subscription__is_active=True
            ).exists():
                break
            due = services.deliveries_due()
            if not due:
                time.sleep(0.02)
                continue
            if pool is None:
                outcomes += [attempt(pk) for pk in due]
            else:
                # Each due delivery offered to two senders at once: only one may send it.
                outcomes += list(pool.map(attempt, [pk for pk in due for _ in range(2)]))
    finally:
        if pool is not None:
            pool.shutdown()
    return outcomes


# Accounts made here, not with emporium.core.tests.factories: those import apps that sit
# above integrations, which this package's tests may not import either (.importlinter).
def account_new(*, staff: bool = False, email: str = "", role: str = "admin") -> Any:
    from emporium.accounts.models import User
    from emporium.accounts.roles import Role, user_role_assign

    number = User.objects.count() + 1
    user = User.objects.create_user(
        username=f"hooks{number}-{uuid.uuid4().hex[:6]}",
        email=email or f"hooks{number}@example.com",
        password=None,
        is_staff=staff,
    )
    if staff:
        user_role_assign(user=user, role=Role(role))
    return user


def client_for(user: Any) -> Any:
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client
