"""Device token registration for signed-in users; dead letters and their replay for staff."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.accounts.auth import authenticated_user
from emporium.core.errors import InvalidInput
from emporium.core.pagination import KeysetPagination
from emporium.core.permissions import AUTHENTICATED, ActionPermissions, RequiredPermissions
from emporium.notifications.channels import selectors, services
from emporium.notifications.channels.serializers import (
    DeadLetterBulkReplaySerializer,
    DeadLetterFilterSerializer,
    DeadLetterSerializer,
    DeviceTokenDeleteSerializer,
    DeviceTokenInputSerializer,
    DeviceTokenSerializer,
    ReplayResultSerializer,
)

VIEW = ("notification_channels.view_delivery",)
CHANGE = ("notification_channels.change_delivery",)


class DeviceTokenView(APIView):
    """The signed-in user's push device tokens: list, register (or refresh), unregister."""

    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {
        "get": AUTHENTICATED,
        "post": AUTHENTICATED,
        "delete": AUTHENTICATED,
    }

    @extend_schema(responses=DeviceTokenSerializer(many=True))
    def get(self, request: Request) -> Response:
        user = authenticated_user(request)
        return Response(
            DeviceTokenSerializer(selectors.device_token_list(user_id=user.pk), many=True).data
        )

    @extend_schema(request=DeviceTokenInputSerializer, responses={201: DeviceTokenSerializer})
    def post(self, request: Request) -> Response:
        serializer = DeviceTokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row = services.device_token_register(
            user_id=authenticated_user(request).pk,
            token=serializer.validated_data["token"],
            platform=serializer.validated_data["platform"],
        )
        return Response(DeviceTokenSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=DeviceTokenDeleteSerializer, responses={204: None})
    def delete(self, request: Request) -> Response:
        serializer = DeviceTokenDeleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.device_token_unregister(
            user_id=authenticated_user(request).pk, token=serializer.validated_data["token"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeadLetterListView(APIView):
    """Parked deliveries, most recently parked first; ``?channel=`` and ``?error=`` filter."""

    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"get": VIEW}

    @extend_schema(
        parameters=[
            OpenApiParameter("channel", str, enum=["email", "push"]),
            OpenApiParameter("error", str, description="Part of the last error, any case."),
        ],
        responses=DeadLetterSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = DeadLetterFilterSerializer(data=request.query_params)
        if not filters.is_valid():
            raise InvalidInput("The filters are invalid.", details=filters.errors)
        paginator = KeysetPagination()
        page = paginator.paginate_queryset(
            selectors.dead_letter_list(
                channel=filters.validated_data.get("channel"),
                error_contains=filters.validated_data.get("error"),
            ),
            request,
            self,
        )
        return paginator.get_paginated_response(DeadLetterSerializer(page, many=True).data)


class DeadLetterReplayView(APIView):
    """Replays one dead letter; replaying it again (or one already sent) replays nothing."""

    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"post": CHANGE}

    @extend_schema(request=None, responses={202: ReplayResultSerializer})
    def post(self, request: Request, pk: int) -> Response:
        replayed = services.dead_letter_replay(delivery_id=pk)
        return Response({"replayed": int(replayed)}, status=status.HTTP_202_ACCEPTED)


class DeadLetterBulkReplayView(APIView):
    """Replays dead letters by id, or all matching a channel and/or an error; idempotent."""

    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"post": CHANGE}

    @extend_schema(
        operation_id="notifications_dead_letters_replay_bulk",
        request=DeadLetterBulkReplaySerializer,
        responses={202: ReplayResultSerializer},
    )
    def post(self, request: Request) -> Response:
        serializer = DeadLetterBulkReplaySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        replayed = services.dead_letters_replay(
            delivery_ids=data.get("ids") or None,
            channel=data.get("channel"),
            error_contains=data.get("error"),
        )
        return Response({"replayed": replayed}, status=status.HTTP_202_ACCEPTED)
