"""The WebSocket endpoints: authenticate, authorise, then hand the socket to the hub.

Each consumer accepts the socket first (a close code can only be sent on an
open socket), authenticates with the JWT from the subprotocol header or the
first message (the dashboard also takes a staff session), registers with the
hub under the token's user (so a revocation of that user closes it with
4401 from then on), reads the account, decides which groups the caller may
join, queues a ``welcome`` message and joins them. From then on events flow
hub → buffer → socket without passing through Channels' dispatch, so no
delivery hops to a thread; only the few messages a client sends (auth,
disconnect) do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from emporium.accounts.models import User
from emporium.core import correlation
from emporium.realtime import groups, providers
from emporium.realtime.auth import (
    TOKEN_SUBPROTOCOL,
    Authenticated,
    session_user_still_active,
    token_from_message,
    token_from_subprotocols,
    token_identity,
    user_for_identity,
)
from emporium.realtime.hub import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_SERVICE_RESTART,
    CLOSE_UNAUTHENTICATED,
    BufferPolicy,
    Connection,
    TransportUnavailable,
)
from emporium.realtime.transport import HUB, dumps

logger = logging.getLogger(__name__)

# An alias with no entry in CHANNEL_LAYERS: Channels then gives the consumer no
# per-connection channel (and no task waiting on it); the hub delivers instead.
NO_CHANNEL_LAYER = "realtime-direct"


def reliable_policy() -> BufferPolicy:
    return BufferPolicy(capacity=settings.EMPORIUM_REALTIME_BUFFER_EVENTS, drop_oldest=False)


class StreamConsumer(AsyncConsumer):
    """Shared life cycle of every stream; subclasses say who may join which groups."""

    channel_layer_alias = NO_CHANNEL_LAYER
    stream: ClassVar[str]
    accepts_session: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection: Connection | None = None
        self._authenticating = False
        self._closed = False
        self._timers: list[asyncio.TimerHandle] = []
        self.request_id = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # One id for the whole session (the handshake's X-Request-ID when well
        # formed): every line the socket logs carries it, and the handshake's
        # answer returns it.
        headers = dict(scope.get("headers") or ())
        raw = headers.get(correlation.HEADER.lower().encode(), b"")
        self.request_id = correlation.request_id_accept(raw.decode("latin-1") or None)
        correlation.request_id_bind(self.request_id, stream=self.stream)
        await super().__call__(scope, receive, send)

    # -- what subclasses decide ---------------------------------------------------------

    def policy(self) -> BufferPolicy:
        return reliable_policy()

    async def authorize(self, user: User) -> list[str] | int:
        """The groups ``user`` joins on this socket, or the close code that refuses them."""
        raise NotImplementedError

    # -- the life cycle ------------------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        token = token_from_subprotocols(list(self.scope.get("subprotocols") or []))
        await self.send(
            {
                "type": "websocket.accept",
                "subprotocol": TOKEN_SUBPROTOCOL if token is not None else None,
                "headers": [(correlation.HEADER.lower().encode(), self.request_id.encode())],
            }
        )
        logger.info("websocket opened")
        if token is not None:
            await self._authenticate(token)
            return
        session_user = self._session_user()
        if session_user is not None:
            self._authenticating = True
            user_id = session_user.pk
            await self._start(
                user_id, lambda: database_sync_to_async(session_user_still_active)(user_id)
            )
            return
        loop = asyncio.get_running_loop()
        self._timers.append(
            loop.call_later(settings.EMPORIUM_REALTIME_AUTH_TIMEOUT_SECONDS, self._auth_timed_out)
        )

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self.connection is not None or self._authenticating or self._closed:
            return  # after authentication clients have nothing to say
        token = token_from_message(message.get("text"))
        if token is None:
            await self._close(CLOSE_UNAUTHENTICATED)
            return
        await self._authenticate(token)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        logger.info("websocket closed: %s", message.get("code"))
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        if self.connection is not None:
            await self.connection.stop()
        raise StopConsumer()

    # -- helpers -------------------------------------------------------------------------

    async def _authenticate(self, token: str) -> None:
        self._authenticating = True
        identity = token_identity(token) if token else None
        if identity is None:
            await self._close(CLOSE_UNAUTHENTICATED)
            return
        await self._start(
            identity.user_id, lambda: database_sync_to_async(user_for_identity)(identity)
        )

    async def _start(
        self, user_id: int, load_user: Callable[[], Awaitable[Authenticated | None]]
    ) -> None:
        """Registers the socket under ``user_id``, then reads the account and joins its groups.

        Registered first, so a revocation of the user published from here on
        closes the socket; the account is read after that, so one committed
        before is seen there. Either way a deactivated user's socket closes.
        """
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        connection = Connection(hub=HUB, send=self.base_send, policy=self.policy(), user_id=user_id)
        try:
            await HUB.register(connection)
        except TransportUnavailable:
            await self._close(CLOSE_SERVICE_RESTART)
            return
        self.connection = connection
        if self._closed:  # the client left meanwhile
            await connection.stop()
            return
        authenticated = await load_user()
        decision: list[str] | int = CLOSE_UNAUTHENTICATED
        if authenticated is not None and not connection.closing:
            decision = await self.authorize(authenticated.user)
        if connection.closing or self._closed:
            return  # revoked (closed with 4401 already), or the client left
        if isinstance(decision, int) or authenticated is None:
            await connection.stop()
            await self._close(decision if isinstance(decision, int) else CLOSE_UNAUTHENTICATED)
            return
        # First in the buffer: by the time the client reads it, every group is subscribed.
        connection.buffer.append(
            dumps({"type": "welcome", "stream": self.stream, "user_id": authenticated.user.pk})
        )
        try:
            still_open = await HUB.join(connection, decision)
        except TransportUnavailable:
            await self._close(CLOSE_SERVICE_RESTART)
            return
        if not still_open:
            return  # closed (revoked, or its buffer filled) while the groups were subscribed
        connection.start()
        if authenticated.expires_at is not None:
            # The token's validity bounds the socket's: the client reconnects with a fresh one.
            delay = max(0.0, authenticated.expires_at - time.time())
            loop = asyncio.get_running_loop()
            self._timers.append(
                loop.call_later(delay, connection.close_soon, CLOSE_UNAUTHENTICATED)
            )

    def _auth_timed_out(self) -> None:
        if self.connection is None and not self._closed and not self._authenticating:
            HUB.background(
                asyncio.get_running_loop().create_task(self._close(CLOSE_UNAUTHENTICATED))
            )

    async def _close(self, code: int) -> None:
        if self._closed:
            return
        self._closed = True
        await self.send({"type": "websocket.close", "code": code})

    def _session_user(self) -> User | None:
        """A staff browser's session user, only on endpoints that take sessions.

        The socket's Origin must be one of ALLOWED_HOSTS: a cookie-authenticated
        socket opened from another site (cross-site WebSocket hijacking) is refused.
        """
        if not self.accepts_session:
            return None
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return None
        origin = dict(self.scope.get("headers") or []).get(b"origin", b"").decode("latin-1")
        if "://" not in origin:
            return None
        domain, _ = split_domain_port(origin.split("://", 1)[1])
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            return None
        real_user = getattr(user, "_wrapped", user)
        return real_user if isinstance(real_user, User) else None


class OrdersConsumer(StreamConsumer):
    """``/ws/orders/``: status changes of the caller's orders."""

    stream = "orders"

    async def authorize(self, user: User) -> list[str] | int:
        return [groups.user_orders(user.pk)]


class NotificationsConsumer(StreamConsumer):
    """``/ws/notifications/``: the caller's notifications and staff broadcasts."""

    stream = "notifications"

    async def authorize(self, user: User) -> list[str] | int:
        return [groups.user_notifications(user.pk), groups.BROADCAST]


class ShipmentConsumer(StreamConsumer):
    """``/ws/shipments/<id>/``: live positions of one shipment, newest first, at most 2/s."""

    stream = "shipment"

    def policy(self) -> BufferPolicy:
        return BufferPolicy(
            capacity=1,
            drop_oldest=True,
            min_interval=settings.EMPORIUM_REALTIME_POSITION_INTERVAL_SECONDS,
        )

    async def authorize(self, user: User) -> list[str] | int:
        shipment_id = int(self.scope["url_route"]["kwargs"]["shipment_id"])
        # The delivery app decides (providers): only those who may watch every
        # shipment learn that one does not exist.
        visibility = await database_sync_to_async(providers.shipment_visibility)(
            user=user, shipment_id=shipment_id
        )
        if visibility is providers.Visibility.NOT_FOUND:
            return CLOSE_NOT_FOUND
        if visibility is not providers.Visibility.WATCH:
            return CLOSE_FORBIDDEN
        return [groups.shipment(shipment_id)]


class DashboardConsumer(StreamConsumer):
    """``/ws/dashboard/``: live operational figures for holders of ``dashboard.view_dashboard``.

    Signed in with a JWT or with the dashboard page's session.
    """

    stream = "dashboard"
    accepts_session = True

    def policy(self) -> BufferPolicy:
        # Figures and positions are snapshots: a slow dashboard skips old ones.
        return BufferPolicy(capacity=settings.EMPORIUM_REALTIME_BUFFER_EVENTS, drop_oldest=True)

    async def authorize(self, user: User) -> list[str] | int:
        permission = providers.stream_permission(self.stream)  # the dashboard app's
        if permission is None:
            return CLOSE_FORBIDDEN
        allowed = await database_sync_to_async(user.has_perm)(permission)
        return [groups.DASHBOARD] if allowed else CLOSE_FORBIDDEN


class NotFoundConsumer(StreamConsumer):
    """Any other path under /ws/: accepted only to say 4404."""

    stream = "none"

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        await self.send({"type": "websocket.accept"})
        await self._close(CLOSE_NOT_FOUND)
