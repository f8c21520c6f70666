from django.urls import path
from rest_framework.routers import SimpleRouter

from emporium.delivery import api

router = SimpleRouter()
router.register("devices", api.CourierDeviceViewSet, basename="courier-device")
router.register("shipments", api.ShipmentViewSet, basename="shipment")

urlpatterns = [
    path("telemetry/", api.TelemetryIngestView.as_view(), name="telemetry-ingest"),
    path("telemetry/summary/", api.TelemetrySummaryView.as_view(), name="telemetry-summary"),
    path("telemetry/latest/", api.TelemetryLatestView.as_view(), name="telemetry-latest"),
    *router.urls,
]
