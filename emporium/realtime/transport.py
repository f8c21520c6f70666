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
import time
import uuid
import weakref
from typing import Any
from urllib.parse import urlparse

import redis
import redis.asyncio as aredis
from django.conf import settings

from emporium.realtime.hub import CLOSE_SERVICE_RESTART, HUB, Hub, LocalTransport, Transport

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


def publish_text(group: str, text: str) -> None:
    """Sends already serialised JSON to every member of ``group``, in every process.

    Best effort, like any push: a failure is logged and the event stays
    readable over REST for streams that keep one.
    """
    url = redis_url()
    if url is None:
        HUB.deliver_threadsafe(group, text)
        return
    try:
        _sync_client(url).publish(channel_for(url, group), text)
    except redis.RedisError:
        logger.exception("could not publish a realtime event to %s", group)


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


class RedisTransport:
    """Subscribes the hub's groups on one pub/sub connection and feeds the hub."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = key_prefix(url).encode()
        self.client = aredis.Redis.from_url(url, socket_connect_timeout=2)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._groups: dict[bytes, str] = {}
        self._ready = asyncio.Event()

    async def start(self, hub: Hub) -> None:
        # Subscribed to a channel of its own from the start, so the listener
        # always has a subscription to wait on.
        await self.pubsub.subscribe(self.prefix + b"process:" + PROCESS_ID.encode())
        hub.background(asyncio.get_running_loop().create_task(self._listen(hub)))
        hub.background(asyncio.get_running_loop().create_task(self._heartbeat(hub)))

    async def subscribe(self, hub: Hub, group: str) -> None:
        await self.pubsub.subscribe(self.prefix + group.encode())

    async def unsubscribe(self, hub: Hub, group: str) -> None:
        await self.pubsub.unsubscribe(self.prefix + group.encode())

    def _group(self, channel: bytes) -> str:
        group = self._groups.get(channel)
        if group is None:
            group = channel[len(self.prefix) :].decode()
            if len(self._groups) < 100_000:
                self._groups[channel] = group
        return group

    async def _listen(self, hub: Hub) -> None:
        while True:
            try:
                async for message in self.pubsub.listen():
                    if message["type"] == "message":
                        hub.deliver(self._group(message["channel"]), message["data"].decode())
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError):
                # Events published while the subscription was down are gone:
                # close the streams that promise every event, so their clients
                # reconnect and resync over REST. Position streams carry on.
                logger.exception("realtime pub/sub connection lost; resubscribing")
                hub.close_all(CLOSE_SERVICE_RESTART, reliable_only=True)
                await asyncio.sleep(1.0)
                with contextlib.suppress(redis.RedisError, OSError):
                    await self.pubsub.aclose()
                self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                with contextlib.suppress(redis.RedisError, OSError):
                    await self.pubsub.subscribe(
                        self.prefix + b"process:" + PROCESS_ID.encode(),
                        *(self.prefix + group.encode() for group in hub.subscribed),
                    )

    async def _heartbeat(self, hub: Hub) -> None:
        key = counts_key(self.url)
        while True:
            try:
                await self.client.hset(key, PROCESS_ID, f"{hub.count} {time.time():.3f}")
                await self.client.expire(key, int(STALE_AFTER_SECONDS * 10))
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError):
                logger.warning("could not record the realtime connection count")
            await asyncio.sleep(HEARTBEAT_SECONDS)


def transport_for_settings() -> Transport:
    url = redis_url()
    return RedisTransport(url) if url else LocalTransport()


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
