"""Reads of subscriptions and their delivery log."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from emporium.integrations.webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)


def subscription_list() -> QuerySet[WebhookSubscription]:
    return WebhookSubscription.objects.order_by("id")


def delivery_list_for_subscription(*, subscription_id: int) -> QuerySet[WebhookDelivery]:
    """Newest first, each with its attempts (two queries per page, whatever its size)."""
    return (
        WebhookDelivery.objects.filter(subscription_id=subscription_id)
        .prefetch_related(Prefetch("log", queryset=WebhookAttempt.objects.order_by("id")))
        .order_by("-id")
    )
