from typing import TypeVar

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from emporium.delivery import services
from emporium.delivery.models import CourierDevice, DevicePosition, Shipment, TelemetryMinute


@admin.register(CourierDevice)
class CourierDeviceAdmin(admin.ModelAdmin[CourierDevice]):
    """Devices are issued through the API, which shows the token once; here staff
    look them up and revoke them."""

    list_display = ["id", "name", "is_active", "revoked_at", "created_at"]
    list_filter = ["is_active", "created_at"]
    search_fields = ["name"]
    exclude = ["token_hash"]
    readonly_fields = ["is_active", "revoked_at", "created_at", "updated_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected devices' tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[CourierDevice]) -> None:
        for device in queryset:
            services.device_revoke(device=device)
        self.message_user(request, f"Revoked {queryset.count()} device(s).", messages.SUCCESS)


@admin.register(Shipment)
class ShipmentAdmin(admin.ModelAdmin[Shipment]):
    list_display = ["id", "order", "device", "status", "created_at", "delivered_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["order__id", "device__name", "order__user__username"]
    raw_id_fields = ["order", "device", "created_by"]
    list_select_related = ["order", "device"]
    # Status moves through the shipment services, which also move the order.
    readonly_fields = [
        "order",
        "device",
        "status",
        "created_by",
        "in_transit_at",
        "delivered_at",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


_DerivedModel = TypeVar("_DerivedModel", bound=Model)


class _ReadOnlyAdmin(admin.ModelAdmin[_DerivedModel]):
    """Derived from ingested points: looked at, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: _DerivedModel | None = None) -> bool:
        return False


@admin.register(TelemetryMinute)
class TelemetryMinuteAdmin(_ReadOnlyAdmin[TelemetryMinute]):
    list_display = ["device", "minute", "point_count", "distance_m", "max_speed"]
    list_filter = ["minute"]
    search_fields = ["device__name"]
    list_select_related = ["device"]


@admin.register(DevicePosition)
class DevicePositionAdmin(_ReadOnlyAdmin[DevicePosition]):
    list_display = ["device", "recorded_at", "latitude", "longitude", "speed"]
    list_filter = ["recorded_at"]
    search_fields = ["device__name"]
    list_select_related = ["device"]
