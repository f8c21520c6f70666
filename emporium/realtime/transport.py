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
import threading
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
            except Exception:
                # Any failure, not only the connection's: a listener that ended
                # silently would leave every socket of the process open and mute.
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
