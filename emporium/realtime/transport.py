"""How events travel between processes: Redis pub/sub, or nothing at all.

Production (``REDIS_URL`` set): a publisher — a web or worker process, after
its transaction commits — sends one ``PUBLISH`` of the event's JSON text to
the group's Redis channel. Each WebSocket server process holds **one** pub/sub
connection, subscribed to the channels of the groups it has local members
in, and hands every message to its hub. Redis does the routing between
processes; the hub does it inside one.

Embedded profile (no Redis): the publisher hands the text to its own
process's hub. ``make run`` serves HTTP and WebSockets from one process, so
that is all it needs.

Redis pub/sub channels are not scoped by database number, so the channel
names carry the URL's database (``emporium:realtime:3:<group>``): two
deployments or test runs on one Redis with different databases stay apart.

Each server process also writes its number of open connections to a Redis
hash every :data:`HEARTBEAT_SECONDS`; :func:`connections_open` adds up the
fresh entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
import weakref
from typing import Any
from urllib.parse import urlparse

import redis
import redis.asyncio as aredis
from django.conf import settings
from redis.asyncio.client import PubSub

from emporium.realtime.hub import (
    CLOSE_SERVICE_RESTART,
    Hub,
    LocalTransport,
    Transport,
    TransportUnavailable,
)

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS
PROCESS_ID = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def redis_url() -> str | None:
    url: str | None = getattr(settings, "EMPORIUM_REALTIME_REDIS_URL", None)
    return url


def key_prefix(url: str) -> str:
    """``emporium:realtime:<db>:`` — the URL's database number keeps runs apart."""
    path = urlparse(url).path.strip("/") or "0"
    return f"emporium:realtime:{path}:"


def channel_for(url: str, group: str) -> str:
    return key_prefix(url) + group


def counts_key(url: str) -> str:
    return key_prefix(url) + "connections"


# -- publishing ---------------------------------------------------------------------


@functools.cache
def _sync_client(url: str) -> redis.Redis:
    # Short timeouts: a publish runs in on_commit of a request that already
    # succeeded; a stuck Redis must not hold it for long.
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def _async_client(url: str) -> aredis.Redis:
    """One client per event loop: redis.asyncio connections belong to the loop that made them."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        _async_clients[loop] = client
    return client


class _BackgroundPublisher:
    """Sends PUBLISHes from one thread per process, pipelined, in the order they were handed in.

    A request that commits an order hands its event over without waiting for
    Redis: on the checkout path the PUBLISH round trip (and taking the
    interpreter lock back after it) was a tenth of the request's time. Events
    queued while Redis is slow are sent in one pipeline once it answers. The
    queue is bounded: past ``capacity`` events waiting, new ones are dropped
    and logged. Pushes are best effort anyway; order and notification events
    stay readable over REST (``?since=``).
    """

    def __init__(self, capacity: int = 10_000, batch: int = 500) -> None:
        self._queue: queue.Queue[tuple[str, str, str]] = queue.Queue(maxsize=capacity)
        self._batch = batch
        self._lock = threading.Lock()
        self._pid: int | None = None

    def put(self, url: str, channel: str, text: str) -> None:
        self._started()
        try:
            self._queue.put_nowait((url, channel, text))
        except queue.Full:
            logger.warning("realtime publish queue full; dropped an event for %s", channel)

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until everything handed in so far was sent (or failed); for tests and shutdown."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def _started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():  # first use, or first use after a fork
                self._queue = queue.Queue(maxsize=self._queue.maxsize)
                threading.Thread(target=self._run, name="realtime-publish", daemon=True).start()
                self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            by_url: dict[str, list[tuple[str, str]]] = {}
            for url, channel, text in batch:
                by_url.setdefault(url, []).append((channel, text))
            for url, messages in by_url.items():
                try:
                    pipe = _sync_client(url).pipeline(transaction=False)
                    for channel, text in messages:
                        pipe.publish(channel, text)
                    pipe.execute()
                except redis.RedisError:
                    logger.exception("could not publish %d realtime events", len(messages))
            for _ in batch:
                self._queue.task_done()


PUBLISHER = _BackgroundPublisher()


def publish_text(group: str, text: str) -> None:
    """Sends already serialised JSON to every member of ``group``, in every process.

    Best effort, like any push: with Redis it is handed to this process's
    publisher thread (:class:`_BackgroundPublisher`); a failure is logged and
    the event stays readable over REST for streams that keep one.
    """
    url = redis_url()
    if url is None:
        HUB.deliver_threadsafe(group, text)
        return
    PUBLISHER.put(url, channel_for(url, group), text)


async def apublish_text(group: str, text: str) -> None:
    url = redis_url()
    if url is None:
        HUB.deliver_threadsafe(group, text)
        return
    try:
        await _async_client(url).publish(channel_for(url, group), text)
    except redis.RedisError:
        logger.exception("could not publish a realtime event to %s", group)


def dumps(payload: Any) -> str:
    """The one serialisation of an event; compact, and dates as ISO strings."""
    return json.dumps(payload, separators=(",", ":"), default=str)


# -- receiving (one pub/sub connection per server process) ----------------------------


RECONNECT_FIRST_DELAY_SECONDS = 0.1
RECONNECT_MAX_DELAY_SECONDS = 5.0


def reconnect_delay(attempt: int) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (0, 1, …).

    Doubling from :data:`RECONNECT_FIRST_DELAY_SECONDS` up to
    :data:`RECONNECT_MAX_DELAY_SECONDS`, and a random half of it on top of
    the other half, so the processes that lost one Redis do not all come
    back at the same instant.
    """
    ceiling = min(
        RECONNECT_MAX_DELAY_SECONDS, RECONNECT_FIRST_DELAY_SECONDS * 2 ** min(attempt, 16)
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - spreading, not secrecy


class RedisTransport:
    """Subscribes the hub's groups on one pub/sub connection and feeds the hub.

    When the connection is lost the transport reports itself disconnected
    (:attr:`connected`, read by ``emporium.realtime.transport_healthy``),
    closes every local socket with :data:`CLOSE_SERVICE_RESTART` (what was
    published meanwhile, revocations included, is gone) and reconnects with
    :func:`reconnect_delay` between attempts, always yielding to the event
    loop, so HTTP and shutdown carry on during an outage.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = key_prefix(url).encode()
        self.process_channel = self.prefix + b"process:" + PROCESS_ID.encode()
        # No read timeout on the pub/sub connection: it waits for messages.
        self.client = aredis.Redis.from_url(url, socket_connect_timeout=2)
        # Heartbeats and clean-up must not wait for long on a stuck Redis.
        self.commands = aredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self.pubsub: PubSub | None = None
        self.connected = False
        self._groups: dict[bytes, str] = {}

    async def start(self, hub: Hub) -> None:
        try:
            await self._connect(hub)
        except (redis.RedisError, OSError) as error:
            logger.warning("realtime pub/sub cannot reach Redis (%s); retrying", error)
        loop = asyncio.get_running_loop()
        hub.background(loop.create_task(self._listen(hub), name="realtime-listen"))
        hub.background(loop.create_task(self._heartbeat(hub), name="realtime-heartbeat"))

    async def stop(self) -> None:
        """Closes the connections and takes this process out of the connection count."""
        self.connected = False
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            await _discard(pubsub)
        with contextlib.suppress(redis.RedisError, OSError, TimeoutError):
            async with asyncio.timeout(2):
                await self.commands.hdel(counts_key(self.url), PROCESS_ID)
        for client in (self.commands, self.client):
            with contextlib.suppress(redis.RedisError, OSError):
                await client.aclose()

    async def subscribe(self, hub: Hub, group: str) -> None:
        pubsub = self.pubsub
        if not self.connected or pubsub is None:
            raise TransportUnavailable("realtime pub/sub is reconnecting")
        try:
            await pubsub.subscribe(self.prefix + group.encode())
        except (redis.RedisError, OSError) as error:
            raise TransportUnavailable("realtime pub/sub lost its connection") from error
        if pubsub is not self.pubsub:
            # Subscribed on a connection that was lost meanwhile; the new one
            # subscribes only the groups the hub had recorded.
            raise TransportUnavailable("realtime pub/sub lost its connection")

    async def unsubscribe(self, hub: Hub, group: str) -> None:
        pubsub = self.pubsub
        if not self.connected or pubsub is None:
            return  # the next connection subscribes only what the hub still has
        with contextlib.suppress(redis.RedisError, OSError):
            await pubsub.unsubscribe(self.prefix + group.encode())

    def _group(self, channel: bytes) -> str:
        group = self._groups.get(channel)
        if group is None:
            group = channel[len(self.prefix) :].decode()
            if len(self._groups) < 100_000:
                self._groups[channel] = group
        return group

    async def _connect(self, hub: Hub) -> None:
        """A new pub/sub connection with this process's channel and every group of the hub."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            # This process's own channel first: the connection then always has a
            # subscription, so listen() waits instead of returning.
            await pubsub.subscribe(self.process_channel)
            # The hub records a group only after subscribe() returned, and
            # subscribe() refuses while disconnected: this is every group.
            channels = [self.prefix + group.encode() for group in hub.subscribed]
            if channels:
                await pubsub.subscribe(*channels)
        except BaseException:
            await _discard(pubsub)
            raise
        self.pubsub = pubsub
        self.connected = True

    def _lost(self, hub: Hub) -> None:
        self.connected = False
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            hub.background(asyncio.get_running_loop().create_task(_discard(pubsub)))
        # Every socket, positions and dashboards too: a revocation published
        # meanwhile is lost as well, and a reconnecting client authenticates again.
        hub.close_all(CLOSE_SERVICE_RESTART, reliable_only=False)

    async def _listen(self, hub: Hub) -> None:
        attempt = 0
        while True:
            if not self.connected:
                # Always a real sleep before trying again: a failing attempt can
                # return at once, and a loop that never awaits starves the server.
                await asyncio.sleep(reconnect_delay(attempt))
                attempt += 1
                try:
                    await self._connect(hub)
                except (redis.RedisError, OSError) as error:
                    logger.debug("realtime pub/sub reconnection %d failed: %s", attempt, error)
                    continue
                logger.warning("realtime pub/sub reconnected after %d attempts", attempt)
                attempt = 0
            pubsub = self.pubsub
            if pubsub is None:
                self.connected = False
                continue
            try:
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        hub.deliver(self._group(message["channel"]), message["data"].decode())
                # listen() ends when nothing is subscribed, which this transport never asks for.
                raise redis.ConnectionError("the pub/sub connection has no subscription left")
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as error:
                logger.warning("realtime pub/sub connection lost (%s); reconnecting", error)
                self._lost(hub)
            except Exception:
                # Any failure, not only the connection's: a listener that ended
                # silently would leave every socket of the process open and mute.
                logger.exception("realtime pub/sub listener failed; reconnecting")
                self._lost(hub)

    async def _heartbeat(self, hub: Hub) -> None:
        key = counts_key(self.url)
        failing = False
        while True:
            try:
                await self.commands.hset(key, PROCESS_ID, f"{hub.count} {time.time():.3f}")
                await self.commands.expire(key, int(STALE_AFTER_SECONDS * 10))
                failing = False
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError):
                if not failing:
                    logger.warning("could not record the realtime connection count")
                failing = True
            await asyncio.sleep(HEARTBEAT_SECONDS)


async def _discard(pubsub: PubSub) -> None:
    with contextlib.suppress(redis.RedisError, OSError):
        await pubsub.aclose()


def transport_for_settings() -> Transport:
    url = redis_url()
    return RedisTransport(url) if url else LocalTransport()


# This process's hub; it starts its transport when first bound (see Hub.bind).
HUB = Hub(transport_factory=transport_for_settings)


# -- who listens ------------------------------------------------------------------------


def groups_listened(groups: list[str]) -> set[str]:
    """Those of ``groups`` with a member in some server process (PUBSUB NUMSUB on Redis).

    For a publisher with many groups to send to (a broadcast's batch of
    recipients): sending only to groups someone listens to saves the rest.
    One round trip per thousand groups; the embedded profile asks its own hub.
    """
    if not groups:
        return set()
    url = redis_url()
    if url is None:
        return {group for group in groups if HUB.groups.get(group)}
    client = _sync_client(url)
    prefix = key_prefix(url)
    listened: set[str] = set()
    for start in range(0, len(groups), 1000):
        chunk = groups[start : start + 1000]
        answer = client.pubsub_numsub(*(prefix + group for group in chunk))
        for (_, count), group in zip(answer, chunk, strict=True):
            if count:
                listened.add(group)
    return listened


# -- the connection count ---------------------------------------------------------------


def connections_open() -> int:
    """Open WebSocket connections across every server process (this one without Redis).

    Each process reports every couple of seconds; an entry older than
    :data:`STALE_AFTER_SECONDS` belongs to a process that stopped and is removed.
    """
    url = redis_url()
    if url is None:
        return HUB.count
    client = _sync_client(url)
    key = counts_key(url)
    now = time.time()
    total = 0
    stale: list[bytes | str] = []
    for process, value in client.hgetall(key).items():
        count, _, stamp = (value.decode() if isinstance(value, bytes) else value).partition(" ")
        if now - float(stamp) > STALE_AFTER_SECONDS:
            stale.append(process)
        else:
            total += int(count)
    if stale:
        client.hdel(key, *stale)
    return total
