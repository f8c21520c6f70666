"""HTTP endpoints of the delivery domain.

Telemetry ingestion is a thin APIView that leaves DRF's parsers and
serializers out (the body is decoded by msgspec in ``validation``) but keeps
DRF's authentication, permission and error handling, so errors have the
project's one shape and the endpoint is described in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAuthenticated
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.accounts.auth import authenticated_user
from emporium.core.errors import NotFound
from emporium.core.permissions import AUTHENTICATED, ActionPermissions, RequiredPermissions
from emporium.delivery import selectors, services
from emporium.delivery.auth import DeviceTokenAuthentication, IsCourierDevice
from emporium.delivery.models import CourierDevice, Shipment
from emporium.delivery.serializers import (
    CourierDeviceSerializer,
    IssuedDeviceSerializer,
    LatestQuerySerializer,
    PositionSerializer,
    ShipmentCreateSerializer,
    ShipmentSerializer,
    ShipmentTrackSerializer,
    SummaryQuerySerializer,
    TelemetryIngestResultSerializer,
    TelemetryPointDocSerializer,
    TelemetrySummarySerializer,
)
from emporium.delivery.validation import JSON_MEDIA_TYPE


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    """Describes ``Authorization: Device <token>`` in the OpenAPI document."""

    target_class = DeviceTokenAuthentication
    name = "DeviceToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A courier device's token, issued by staff: 'Device <token>'.",
        }


class CourierDeviceViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[CourierDevice],
):
    """Courier devices and their tokens, for admins. A token is shown once, when issued."""

    serializer_class = CourierDeviceSerializer
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {
        "list": ("delivery.view_courierdevice",),
        "retrieve": ("delivery.view_courierdevice",),
        "create": ("delivery.add_courierdevice",),
        "revoke": ("delivery.change_courierdevice",),
        "rotate_token": ("delivery.change_courierdevice",),
    }
    lookup_value_regex = r"\d+"
    queryset = CourierDevice.objects.order_by("-created_at", "-id")

    @extend_schema(request=CourierDeviceSerializer, responses={201: IssuedDeviceSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = CourierDeviceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.device_issue(
            name=serializer.validated_data["name"],
            metadata=serializer.validated_data.get("metadata"),
        )
        body = {**CourierDeviceSerializer(issued.device).data, "token": issued.token}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=CourierDeviceSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Revokes the device's token: its next request gets 401."""
        device = services.device_revoke(device=self.get_object())
        return Response(CourierDeviceSerializer(device).data)

    @extend_schema(request=None, responses=IssuedDeviceSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-token")
    def rotate_token(self, request: Request, pk: str | None = None) -> Response:
        """Issues a new token for an active device; the old one stops working."""
        issued = services.device_token_rotate(device=self.get_object())
        return Response({**CourierDeviceSerializer(issued.device).data, "token": issued.token})


class ShipmentViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Shipment],
):
    """Shipments: customers see those of their own orders; support sees all; admins run them."""

    serializer_class = ShipmentSerializer
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {
        "list": AUTHENTICATED,
        "retrieve": AUTHENTICATED,
        "track": AUTHENTICATED,
        "create": ("delivery.add_shipment",),
        "start": ("delivery.change_shipment",),
        "deliver": ("delivery.change_shipment",),
    }
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[Shipment]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Shipment.objects.none()
        return selectors.shipment_list_for_user(user=authenticated_user(self.request))

    @extend_schema(request=ShipmentCreateSerializer, responses={201: ShipmentSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Gives an order to a courier device; a paid order becomes shipped."""
        serializer = ShipmentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        shipment = services.shipment_create(
            order=serializer.validated_data["order"],
            device=serializer.validated_data["device"],
            actor=authenticated_user(request),
        )
        return Response(ShipmentSerializer(shipment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        """The courier has picked the parcel up (assigned -> in_transit)."""
        shipment = services.shipment_start(shipment=self.get_object())
        return Response(ShipmentSerializer(shipment).data)

    @extend_schema(request=None, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def deliver(self, request: Request, pk: str | None = None) -> Response:
        """The parcel was handed over; a shipped order becomes delivered."""
        shipment = services.shipment_deliver(
            shipment=self.get_object(), actor=authenticated_user(request)
        )
        return Response(ShipmentSerializer(shipment).data)

    @extend_schema(responses=ShipmentTrackSerializer)
    @action(detail=True, methods=["get"])
    def track(self, request: Request, pk: str | None = None) -> Response:
        """The courier's latest position and the last 30 minutes of route, per minute.

        Only while the shipment is under way: positions before it was created or
        after it was delivered are not shown. Another customer's shipment is 404.
        """
        track = selectors.shipment_track(shipment=self.get_object())
        return Response(
            ShipmentTrackSerializer(
                {
                    "shipment": track.shipment,
                    "position": track.position,
                    "recent": {
                        "device_id": track.shipment.device_id,
                        "window": selectors.TRACK_RECENT_WINDOW,
                        "from": track.recent_start,
                        "to": track.recent_end,
                        "results": track.recent,
                    },
                }
            ).data
        )


class _UnreadBodyParser(BaseParser):
    """Declares the accepted media types; the view reads the raw body itself."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raise NotImplementedError("the telemetry view decodes request.body with msgspec")


class _JSONBatchParser(_UnreadBodyParser):
    media_type = "application/json"


class _NDJSONBatchParser(_UnreadBodyParser):
    media_type = "application/x-ndjson"


class TelemetryIngestView(APIView):
    authentication_classes = [DeviceTokenAuthentication]
    permission_classes = [IsCourierDevice]
    throttle_classes: list[Any] = []
    parser_classes = [_JSONBatchParser, _NDJSONBatchParser]

    @extend_schema(
        operation_id="telemetry_ingest",
        summary="Report a batch of GPS points (devices only)",
        description=(
            "Authenticate with 'Authorization: Device <token>'. The body is a JSON array of "
            "points, or NDJSON (Content-Type: application/x-ndjson, one point per line), of at "
            "most 10,000 points and 2 MiB; more is answered 413. Each point is checked on its "
            "own: valid points are stored even when others are rejected, and the rejected ones "
            "are listed with their index and reason. A point whose device and timestamp are "
            "already stored, or repeated in the batch, is a duplicate and changes nothing, so "
            "a batch may be sent again safely."
        ),
        request={
            "application/json": TelemetryPointDocSerializer(many=True),
            "application/x-ndjson": TelemetryPointDocSerializer,
        },
        responses={
            200: TelemetryIngestResultSerializer,
            400: OpenApiResponse(description="The body is not a JSON array or NDJSON."),
            401: OpenApiResponse(description="Missing, unknown or revoked device token."),
            413: OpenApiResponse(description="Too many points, or a body over 2 MiB."),
            415: OpenApiResponse(description="Neither application/json nor NDJSON."),
        },
    )
    def post(self, request: Request) -> Response:
        device = request.auth
        if not isinstance(device, CourierDevice):  # IsCourierDevice already refused this
            raise NotAuthenticated()
        media_type = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        result = services.telemetry_batch_ingest(
            device=device, body=request.body, media_type=media_type or JSON_MEDIA_TYPE
        )
        return Response(
            {
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "rejected": [
                    {
                        "index": rejection.index,
                        "reason": rejection.reason,
                        "message": rejection.message,
                    }
                    for rejection in result.rejected
                ],
            }
        )


class TelemetrySummaryView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"get": ("delivery.view_telemetryminute",)}

    @extend_schema(
        operation_id="telemetry_summary",
        summary="Per-window summary of one device's telemetry (staff)",
        description=(
            "Average latitude and longitude, point count, first and last timestamp, distance "
            "travelled (metres) and top speed per window, from the per-minute rollups. Windows "
            "are aligned to UTC multiples of their length; minutes from 'from' (rounded down) "
            "to before 'to' count. Defaults: the hour before 'to', which defaults to now. At "
            f"most {selectors.MAX_SUMMARY_WINDOWS} windows per request."
        ),
        parameters=[SummaryQuerySerializer],
        responses={
            200: TelemetrySummarySerializer,
            404: OpenApiResponse(description="No such device."),
        },
    )
    def get(self, request: Request) -> Response:
        query = SummaryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        device = get_object_or_404(CourierDevice.objects.only("pk"), pk=params["device_id"])
        results = selectors.telemetry_summary(
            device_id=device.pk, start=params["from"], end=params["to"], window=params["window"]
        )
        return Response(
            TelemetrySummarySerializer(
                {
                    "device_id": device.pk,
                    "window": params["window"],
                    "from": params["from"],
                    "to": params["to"],
                    "results": results,
                }
            ).data
        )


class TelemetryLatestView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"get": ("delivery.view_deviceposition",)}

    @extend_schema(
        operation_id="telemetry_latest",
        summary="The last position a device reported (staff)",
        parameters=[LatestQuerySerializer],
        responses={
            200: PositionSerializer,
            404: OpenApiResponse(description="No such device, or it has reported nothing yet."),
        },
    )
    def get(self, request: Request) -> Response:
        query = LatestQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        device = get_object_or_404(
            CourierDevice.objects.only("pk"), pk=query.validated_data["device_id"]
        )
        position = selectors.device_position_latest(device_id=device.pk)
        if position is None:
            raise NotFound("This device has not reported a position yet.", code="no_position")
        return Response(PositionSerializer(position).data)
