"""The per-process registry of open WebSocket connections and their outgoing buffers.

One hub per server process (``transport.HUB``, built there with its
transport) knows which local connections belong to which group. An event
reaches it once (from Redis pub/sub in production, from the publishing
thread in the embedded profile) as JSON text that was
serialised once by the publisher; the hub appends that same string to the
buffer of every local member. Each connection has its own writer task that
drains its buffer into the socket, so a client that reads slowly only ever
holds up its own task: the fan-out itself never awaits a socket.

Buffers are bounded. What happens when one is full depends on the stream
(:class:`BufferPolicy`): position streams drop their oldest entries (only
the newest position matters), order and notification streams close the
socket with :data:`CLOSE_TOO_SLOW` so the client reconnects and fetches what
it missed over REST.

The hub also indexes its connections by user. A revocation (the account was
deactivated or deleted, or its tokens revoked) is published to the group
:data:`~emporium.realtime.groups.REVOCATIONS`, which every process is always
subscribed to; each hub closes that user's local sockets with
:data:`CLOSE_UNAUTHENTICATED`.

Nothing here touches the ORM: delivery never hops to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from emporium.observability import domain_metrics
from emporium.realtime import groups as group_names

logger = logging.getLogger(__name__)

# Close codes (4000-4999 are free for applications; see docs/realtime.md).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 4408
CLOSE_SERVICE_RESTART = 1012

Send = Callable[[dict[str, Any]], Awaitable[None]]

# The metric children the fan-out touches, looked up once.
_SENT = domain_metrics.WEBSOCKET_MESSAGES_SENT
_DROPPED_SLOW_CLIENT = domain_metrics.WEBSOCKET_MESSAGES_DROPPED.labels("slow_client")
_DROPPED_SUPERSEDED = domain_metrics.WEBSOCKET_MESSAGES_DROPPED.labels("superseded")


@dataclass(frozen=True)
class BufferPolicy:
    """How many events a connection may have waiting, and what a full buffer means.

    ``drop_oldest``: a full buffer forgets its oldest entry (latest wins);
    otherwise the connection is closed with :data:`CLOSE_TOO_SLOW`.
    ``min_interval``: seconds the writer waits after each send, which caps the
    rate a client receives at ``1 / min_interval``; events arriving meanwhile
    wait in the buffer (with ``capacity=1`` and ``drop_oldest`` only the newest).
    """

    capacity: int
    drop_oldest: bool
    min_interval: float = 0.0


class TransportUnavailable(Exception):
    """The transport cannot subscribe now (Redis is down); the socket should come back later."""


class Transport(Protocol):
    """Where the hub's groups come from: Redis pub/sub, or nothing (in-process).

    ``start`` must not fail when the server is unreachable: the transport keeps
    trying in the background and says so through ``connected``. ``subscribe``
    raises :class:`TransportUnavailable` while it is not connected.
    """

    @property
    def connected(self) -> bool: ...

    async def subscribe(self, hub: Hub, group: str) -> None: ...

    async def unsubscribe(self, hub: Hub, group: str) -> None: ...

    async def start(self, hub: Hub) -> None: ...

    async def stop(self) -> None: ...


class Connection:
    """One accepted, authenticated socket as the hub sees it."""

    __slots__ = (
        "_closing",
        "_send",
        "_wake",
        "_writer",
        "buffer",
        "groups",
        "hub",
        "policy",
        "registered",
        "user_id",
    )

    def __init__(self, *, hub: Hub, send: Send, policy: BufferPolicy, user_id: int) -> None:
        self.hub = hub
        self.policy = policy
        self.user_id = user_id
        self.registered = False
        self._send = send
        self.buffer: deque[str] = deque(maxlen=policy.capacity if policy.drop_oldest else None)
        self.groups: tuple[str, ...] = ()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    def offer(self, text: str) -> None:
        """Queues one event; called on the hub's loop for every member of a group."""
        if self._closing:
            return
        if len(self.buffer) >= self.policy.capacity:
            if not self.policy.drop_oldest:
                logger.info("closing a connection whose buffer of %s is full", self.policy.capacity)
                # This event and every one still waiting: the client refetches them over REST.
                _DROPPED_SLOW_CLIENT.inc(len(self.buffer) + 1)
                self.close_soon(CLOSE_TOO_SLOW)
                return
            _DROPPED_SUPERSEDED.inc()  # the append below pushes the oldest out
        self.buffer.append(text)
        self._wake.set()

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        buffer = self.buffer
        wake = self._wake
        interval = self.policy.min_interval
        try:
            while True:
                while not buffer:
                    wake.clear()
                    await wake.wait()
                await self._send({"type": "websocket.send", "text": buffer.popleft()})
                _SENT.inc()
                if interval:
                    await asyncio.sleep(interval)
        except (OSError, RuntimeError) as error:
            # The server reports a socket that went away this way; the
            # disconnect message that follows unregisters the connection.
            logger.debug("writer stopped: %s", error)

    def close_soon(self, code: int) -> None:
        """Stops delivery at once and closes the socket with ``code``.

        The writer may be blocked on a client that does not read; it is
        cancelled (what it had handed to the transport stays there) and the
        close frame goes out behind it.
        """
        if self._closing:
            return
        self._closing = True
        self.hub.unregister(self)
        if self._writer is not None:
            self._writer.cancel()
        self.buffer.clear()
        task = asyncio.get_running_loop().create_task(self._close(code))
        self.hub.background(task)

    async def _close(self, code: int) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            await self._send({"type": "websocket.close", "code": code})

    async def stop(self) -> None:
        """The socket is gone: stop the writer and leave every group."""
        self._closing = True
        self.hub.unregister(self)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer


class LocalTransport:
    """The embedded profile: publishers hand events straight to this process's hub."""

    connected = True

    async def start(self, hub: Hub) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def subscribe(self, hub: Hub, group: str) -> None:
        return None

    async def unsubscribe(self, hub: Hub, group: str) -> None:
        return None


class Hub:
    """Groups of local connections, bound to the event loop that serves them."""

    # Groups every process listens to whether or not it has sockets in them.
    ALWAYS_SUBSCRIBED = frozenset({group_names.REVOCATIONS})

    def __init__(self, *, transport_factory: Callable[[], Transport]) -> None:
        # Injected (the process's hub is made in transport.py): this module
        # never imports a transport.
        self._transport_factory = transport_factory
        self.loop: asyncio.AbstractEventLoop | None = None
        self.groups: dict[str, set[Connection]] = {}
        self.users: dict[int, set[Connection]] = {}
        self.count = 0
        self.subscribed: set[str] = set()
        self._subscription_lock: asyncio.Lock | None = None
        self._transport: Transport | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._bind_lock = threading.Lock()
        self._started: asyncio.Event | None = None

    # -- binding to a loop and a transport ------------------------------------------

    async def bind(self) -> None:
        """Attaches the hub to the running loop, starting its transport the first time.

        A server process has one loop for its lifetime (the ASGI lifespan binds
        it at startup; without a lifespan the first socket does). Tests start
        and stop servers within one process, so a hub whose loop has closed
        starts over.
        """
        loop = asyncio.get_running_loop()
        with self._bind_lock:
            started = self._started
            if self.loop is loop and started is not None:
                first = False
            else:
                if self.loop is not None and self.loop.is_running() and not self.loop.is_closed():
                    raise RuntimeError("the realtime hub is already serving another event loop")
                self.loop = loop
                self.groups = {}
                self.users = {}
                self.count = 0
                domain_metrics.WEBSOCKET_CONNECTIONS.set(0)
                self.subscribed = set(self.ALWAYS_SUBSCRIBED)
                self._tasks = set()
                self._subscription_lock = asyncio.Lock()
                started = self._started = asyncio.Event()
                transport = self._transport = self._transport_factory()
                first = True
        if not first:
            # Whoever bound first is still starting the transport: subscribing before
            # it has its connection would race it for one (redis-py's PubSub takes a
            # connection on first use and does not lock), and a subscription made on
            # the connection nobody listens to is silently never delivered.
            await started.wait()
            return
        try:
            await transport.start(self)
        finally:
            started.set()

    async def shutdown(self) -> None:
        """Stops the transport and every task the hub started; the ASGI lifespan's shutdown."""
        transport = self._transport
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if transport is not None:
            await transport.stop()
        with self._bind_lock:
            self.loop = None
            self._started = None
            self._transport = None

    def transport_healthy(self) -> bool:
        """False while this process's transport has lost Redis and not yet got it back.

        A process that has not started a transport (it serves no WebSockets)
        and the embedded profile (no Redis) are healthy.
        """
        transport = self._transport
        return transport is None or transport.connected

    def background(self, task: asyncio.Task[Any]) -> None:
        """Keeps a reference to a fire-and-forget task until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- membership --------------------------------------------------------------------

    async def register(self, connection: Connection, groups: Iterable[str] = ()) -> None:
        """Counts the connection and indexes it by user, then joins ``groups``.

        From here on a revocation of the connection's user closes it, so a
        socket registers before its user's account is read: a deactivation
        committed after that read is announced after it, and reaches the socket.
        Raises :class:`TransportUnavailable` while Redis is down (events,
        revocations included, could not reach the socket); it is then unregistered.
        """
        await self.bind()
        transport = self._transport
        if transport is None or not transport.connected:
            raise TransportUnavailable("the realtime transport is reconnecting")
        if connection.registered or connection.closing:
            raise RuntimeError("a connection registers once")
        connection.registered = True
        self.count += 1
        domain_metrics.WEBSOCKET_CONNECTIONS.set(self.count)
        self.users.setdefault(connection.user_id, set()).add(connection)
        await self.join(connection, groups)

    async def join(self, connection: Connection, groups: Iterable[str]) -> bool:
        """Adds a registered connection to more groups; returns once each is subscribed.

        Returns whether the connection is still open then: a revocation or a
        full buffer can close it while a subscription is awaited.
        """
        if connection.closing or not connection.registered:
            return False  # revoked, or gone, meanwhile
        new = tuple(group for group in dict.fromkeys(groups) if group not in connection.groups)
        connection.groups += new
        for group in new:
            self.groups.setdefault(group, set()).add(connection)
        try:
            for group in new:
                if group not in self.subscribed:
                    await self._sync_subscription(group)
        except TransportUnavailable:
            self.unregister(connection)
            raise
        return not connection.closing

    def unregister(self, connection: Connection) -> None:
        if not connection.registered:
            return
        connection.registered = False
        self.count -= 1
        domain_metrics.WEBSOCKET_CONNECTIONS.set(self.count)
        same_user = self.users.get(connection.user_id)
        if same_user is not None:
            same_user.discard(connection)
            if not same_user:
                del self.users[connection.user_id]
        groups, connection.groups = connection.groups, ()
        for group in groups:
            members = self.groups.get(group)
            if members is None:
                continue
            members.discard(connection)
            if not members:
                del self.groups[group]
                if self.loop is not None and self.loop.is_running():
                    self.background(self.loop.create_task(self._sync_subscription_later(group)))

    async def _sync_subscription(self, group: str) -> None:
        """Makes the transport's subscription match whether the group has members.

        Serialised by a lock and decided inside it, so a quick leave-then-join
        of the only member never ends unsubscribed.
        """
        lock, transport = self._subscription_lock, self._transport
        if lock is None or transport is None:
            raise RuntimeError("the hub is not bound to a loop")
        async with lock:
            wanted = bool(self.groups.get(group))
            if wanted and group not in self.subscribed:
                await transport.subscribe(self, group)
                self.subscribed.add(group)
            elif not wanted and group in self.subscribed:
                self.subscribed.discard(group)
                await transport.unsubscribe(self, group)

    async def _sync_subscription_later(self, group: str) -> None:
        # A member that joined meanwhile subscribes (or is refused) in its own join.
        with contextlib.suppress(TransportUnavailable):
            await self._sync_subscription(group)

    # -- delivery ----------------------------------------------------------------------

    def deliver(self, group: str, text: str) -> None:
        """Queues ``text`` on every local member of ``group``; runs on the hub's loop."""
        if group == group_names.REVOCATIONS:
            self._revoke(text)
            return
        members = self.groups.get(group)
        if not members:
            return
        for connection in tuple(members):
            connection.offer(text)

    def _revoke(self, text: str) -> None:
        """Closes every local socket of the user named in a revocation with 4401."""
        try:
            user_id = json.loads(text)["user_id"]
        except (ValueError, TypeError, KeyError):
            logger.error("ignored a malformed realtime revocation: %.200r", text)
            return
        if not isinstance(user_id, int):
            logger.error("ignored a malformed realtime revocation: %.200r", text)
            return
        for connection in tuple(self.users.get(user_id, ())):
            connection.close_soon(CLOSE_UNAUTHENTICATED)

    def deliver_threadsafe(self, group: str, text: str) -> None:
        """The same from any thread: the embedded profile's publish."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return  # nobody is connected in this process
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.deliver(group, text)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.deliver, group, text)

    def close_all(self, code: int, *, reliable_only: bool = True) -> None:
        """Closes local connections, e.g. when events may have been lost upstream."""
        for same_user in list(self.users.values()):
            for connection in tuple(same_user):
                if not reliable_only or not connection.policy.drop_oldest:
                    connection.close_soon(code)
