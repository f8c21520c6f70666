"""Staff manage webhook subscriptions, read their delivery log and replay deliveries."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.core.pagination import KeysetPagination
from emporium.core.permissions import ActionPermissions, RequiredPermissions
from emporium.core.selectors import get_or_not_found
from emporium.integrations.webhooks import selectors, services
from emporium.integrations.webhooks.models import WebhookDelivery, WebhookSubscription
from emporium.integrations.webhooks.serializers import (
    DeliverySerializer,
    IssuedSubscriptionSerializer,
    SecretRotateSerializer,
    SubscriptionSerializer,
)
from emporium.integrations.webhooks.tasks import webhook_deliver

VIEW = ("webhooks.view_webhooksubscription",)
CHANGE = ("webhooks.change_webhooksubscription",)


class SubscriptionViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[WebhookSubscription],
):
    """Webhook subscriptions. The signing secret is shown once: at creation and rotation."""

    serializer_class = SubscriptionSerializer
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {
        "list": VIEW,
        "retrieve": VIEW,
        "create": ("webhooks.add_webhooksubscription",),
        "update": CHANGE,
        "partial_update": CHANGE,
        "destroy": ("webhooks.delete_webhooksubscription",),
        "rotate_secret": CHANGE,
    }
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[WebhookSubscription]:
        return selectors.subscription_list()

    @extend_schema(request=SubscriptionSerializer, responses={201: IssuedSubscriptionSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = SubscriptionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        issued = services.subscription_create(
            url=data["url"],
            event_types=data["event_types"],
            description=data.get("description", ""),
            is_active=data.get("is_active", True),
        )
        body = {**SubscriptionSerializer(issued.subscription).data, "secret": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        partial = kwargs.pop("partial", False)
        subscription = self.get_object()
        serializer = SubscriptionSerializer(subscription, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        updated = services.subscription_update(
            subscription=subscription,
            url=data.get("url"),
            event_types=data.get("event_types"),
            description=data.get("description"),
            is_active=data.get("is_active"),
        )
        return Response(SubscriptionSerializer(updated).data)

    @extend_schema(request=SecretRotateSerializer, responses=IssuedSubscriptionSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        """A new secret, shown once; the former one keeps signing for ``grace_seconds``."""
        serializer = SecretRotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.subscription_secret_rotate(
            subscription=self.get_object(),
            grace_seconds=serializer.validated_data["grace_seconds"],
        )
        return Response(
            {**SubscriptionSerializer(issued.subscription).data, "secret": issued.secret}
        )


class DeliveryListView(APIView):
    """The delivery log of one subscription, newest first, each with its attempts."""

    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"get": VIEW}
    pagination_class = KeysetPagination

    @extend_schema(responses=DeliverySerializer(many=True))
    def get(self, request: Request, webhooksubscription_pk: int) -> Response:
        get_or_not_found(WebhookSubscription.objects.all(), pk=webhooksubscription_pk)
        paginator = KeysetPagination()
        page = paginator.paginate_queryset(
            selectors.delivery_list_for_subscription(subscription_id=webhooksubscription_pk),
            request,
            self,
        )
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)


class DeliveryReplayView(APIView):
    """Sends a delivered or failed delivery again (409 while it is still pending)."""

    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"post": CHANGE}

    @extend_schema(request=None, responses={202: DeliverySerializer})
    def post(
        self, request: Request, webhooksubscription_pk: int, webhookdelivery_pk: int
    ) -> Response:
        delivery = get_or_not_found(
            WebhookDelivery.objects.filter(subscription_id=webhooksubscription_pk),
            pk=webhookdelivery_pk,
        )
        delivery = services.delivery_replay(delivery=delivery)
        webhook_deliver.delay(delivery.pk)
        delivery.refresh_from_db()
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
