"""URL routing of the WebSocket endpoints (HTTP is routed in config/urls.py)."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.urls import path, re_path

from emporium.realtime.consumers import (
    DashboardConsumer,
    NotFoundConsumer,
    NotificationsConsumer,
    OrdersConsumer,
    ShipmentConsumer,
)

websocket_urlpatterns = [
    path("ws/orders/", OrdersConsumer.as_asgi()),
    path("ws/notifications/", NotificationsConsumer.as_asgi()),
    path("ws/shipments/<int:shipment_id>/", ShipmentConsumer.as_asgi()),
    # Only the dashboard reads the session cookie (staff browsers log in to the
    # page); the other streams skip the session lookup on every connect.
    path("ws/dashboard/", AuthMiddlewareStack(DashboardConsumer.as_asgi())),
    re_path(r"", NotFoundConsumer.as_asgi()),
]

websocket_application = URLRouter(websocket_urlpatterns)
