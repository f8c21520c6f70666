from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import factory
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from emporium.accounts.models import User
from emporium.accounts.roles import Role, user_role_assign
from emporium.notifications.channels.services import DeliveryRequest

# The channels' own factories: core's import apps above this one (the import contract).


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"channel-user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = "!"  # unusable: these accounts sign in with tokens only


class StaffFactory(UserFactory):
    is_staff = True

    @factory.post_generation
    def role(self, create: bool, extracted: Role | None, **kwargs: object) -> None:
        if create:
            user_role_assign(user=self, role=extracted or Role.ADMIN)  # type: ignore[arg-type]


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def delivery_requests(
    users: Sequence[User],
    *,
    channel: str,
    key: str = "event-1",
    kind: str = "order.paid",
    **extra: Any,
) -> list[DeliveryRequest]:
    return [
        DeliveryRequest(
            recipient_id=user.pk,
            kind=kind,
            channel=channel,
            title=extra.get("title", "Your order is paid"),
            body=extra.get("body", "Order 42 is paid and being packed."),
            data=extra.get("data", {"order_id": 42, "url": "https://shop.example/orders/42"}),
            dedup_key=f"{key}:{user.pk}",
            critical=extra.get("critical", False),
        )
        for user in users
    ]
