"""URL routing of the WebSocket endpoints (HTTP is routed in config/urls.py), and the lifespan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

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
from emporium.realtime.transport import HUB

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


async def lifespan_application(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """The ASGI lifespan: starts the realtime transport with the server, stops it on shutdown.

    Started at startup, the transport's health (``transport_healthy``) means
    something before the first socket. On shutdown (SIGTERM: the server has
    closed its sockets by then) the listener and heartbeat tasks are cancelled
    and the process leaves the connection count at once.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await HUB.bind()
            except Exception as error:
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await HUB.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
