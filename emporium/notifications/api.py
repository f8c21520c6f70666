"""The inbox over REST: list, unread count, read marks, preferences, and staff broadcasts.

Every read is scoped to the caller: another user's notification id answers
404 exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.accounts.auth import authenticated_user
from emporium.core.pagination import KeysetPagination
from emporium.core.permissions import AUTHENTICATED, ActionPermissions, RequiredPermissions
from emporium.notifications import broadcasts, selectors, services
from emporium.notifications.models import CRITICAL_KINDS, KIND_CHANNELS, PREFERENCE_KINDS
from emporium.notifications.serializers import (
    BroadcastCreateSerializer,
    BroadcastSerializer,
    NotificationListQuerySerializer,
    NotificationListSerializer,
    NotificationSerializer,
    PreferencesSerializer,
    ReadAllResultSerializer,
    ReadAllSerializer,
    UnreadCountSerializer,
)


class NotificationListView(GenericAPIView[Any]):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"get": AUTHENTICATED}
    pagination_class = KeysetPagination

    @extend_schema(
        parameters=[NotificationListQuerySerializer],
        responses={200: NotificationListSerializer},
    )
    def get(self, request: Request) -> Response:
        """The caller's notifications, newest first, in cursor pages; ``?unread=true``: unread.

        With ``?since=<id>`` instead: what a client reconnecting to
        ``/ws/notifications/`` missed, oldest first, as ``{results, has_more}``
        (the same shape and ids the socket pushes).
        """
        query = NotificationListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        user = authenticated_user(request)
        if "since" in query.validated_data:
            limit = query.validated_data["limit"]
            rows = selectors.notifications_since(
                user=user, since=query.validated_data["since"], limit=limit
            )
            return Response(
                {
                    "results": [services.notification_event(row) for row in rows[:limit]],
                    "has_more": len(rows) > limit,
                }
            )
        queryset = selectors.notification_list(
            user=user, unread_only=query.validated_data["unread"]
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response([services.notification_event(row) for row in page or []])


class UnreadCountView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"get": AUTHENTICATED}

    @extend_schema(responses=UnreadCountSerializer)
    def get(self, request: Request) -> Response:
        """How many of the caller's notifications are unread (counted up to a cap)."""
        count, capped = selectors.unread_count(user=authenticated_user(request))
        return Response({"unread": count, "capped": capped})


class NotificationReadView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"post": AUTHENTICATED}

    @extend_schema(request=None, responses=NotificationSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Marks one of the caller's notifications read; marking it again changes nothing."""
        notification = services.notification_mark_read(
            user=authenticated_user(request), notification_id=pk
        )
        return Response(services.notification_event(notification))


class ReadAllView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"post": AUTHENTICATED}

    @extend_schema(request=ReadAllSerializer, responses=ReadAllResultSerializer)
    def post(self, request: Request) -> Response:
        """Marks every unread notification of the caller read (up to ``up_to_id``, if given)."""
        body = ReadAllSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        marked = services.notifications_mark_all_read(
            user=authenticated_user(request), up_to_id=body.validated_data.get("up_to_id")
        )
        return Response({"marked": marked})


def _preferences_body(user_id: int) -> dict[str, Any]:
    preferences = services.preferences_for(user_ids=[user_id])[user_id]
    quiet = None
    if preferences.quiet_start is not None and preferences.quiet_end is not None:
        quiet = {
            "start": preferences.quiet_start.strftime("%H:%M"),
            "end": preferences.quiet_end.strftime("%H:%M"),
        }
    return {
        "channels": {
            str(kind): {
                channel: preferences.allows(kind, channel) for channel in KIND_CHANNELS[kind]
            }
            for kind in PREFERENCE_KINDS
        },
        "time_zone": preferences.time_zone,
        "quiet_hours": quiet,
        "critical_kinds": sorted(str(kind) for kind in CRITICAL_KINDS),
    }


class PreferencesView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"get": AUTHENTICATED, "put": AUTHENTICATED}

    @extend_schema(responses=PreferencesSerializer)
    def get(self, request: Request) -> Response:
        """Every kind and channel with its setting, the time zone and the quiet hours."""
        return Response(_preferences_body(authenticated_user(request).pk))

    @extend_schema(request=PreferencesSerializer, responses=PreferencesSerializer)
    def put(self, request: Request) -> Response:
        """Changes what the body names; an unknown kind or channel refuses it all (400)."""
        user = authenticated_user(request)
        body = PreferencesSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        quiet = data.get("quiet_hours")
        services.preferences_update(
            user=user,
            channels=data.get("channels"),
            time_zone=data.get("time_zone"),
            quiet_hours=(quiet["start"], quiet["end"]) if quiet else None,
            clear_quiet_hours="quiet_hours" in data and quiet is None,
        )
        return Response(_preferences_body(user.pk))


class BroadcastCreateView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"post": ("notifications.add_broadcast",)}

    @extend_schema(request=BroadcastCreateSerializer, responses={202: BroadcastSerializer})
    def post(self, request: Request) -> Response:
        """Starts a broadcast (staff): 202 with its progress, which the batches then advance."""
        body = BroadcastCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        broadcast = broadcasts.broadcast_create(
            created_by=authenticated_user(request),
            title=data["title"],
            body=data["body"],
            channels=list(data["channels"]),
            audience=broadcasts.Audience(data["audience"]["type"], data["audience"].get("value")),
        )
        return Response(broadcasts.broadcast_progress(broadcast), status=status.HTTP_202_ACCEPTED)


class BroadcastDetailView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"get": ("notifications.view_broadcast",)}

    @extend_schema(responses=BroadcastSerializer)
    def get(self, request: Request, pk: int) -> Response:
        """A broadcast's progress (also pushed on /ws/dashboard/ as each batch finishes)."""
        return Response(broadcasts.broadcast_progress(selectors.broadcast_get(broadcast_id=pk)))


class BroadcastCancelView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"post": ("notifications.change_broadcast",)}

    @extend_schema(request=None, responses=BroadcastSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Cancels a running broadcast: the batches not written yet are skipped."""
        selectors.broadcast_get(broadcast_id=pk)
        return Response(broadcasts.broadcast_progress(broadcasts.broadcast_cancel(broadcast_id=pk)))
