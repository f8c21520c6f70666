"""A process's first sockets all arriving at once, on the Redis transport.

The hub starts its transport (one pub/sub connection) when the first socket
registers. Sockets that register while that is still under way must wait for
it: subscribing earlier raced the start for a connection, and a group
subscribed on a connection nobody listened to was silently never delivered
(seen in the 10,000-connection fan-out benchmark).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis

from emporium.realtime.hub import BufferPolicy, Connection, Hub
from emporium.realtime.transport import channel_for, transport_for_settings


async def _registered_all_at_once(hub: Hub, group: str, count: int) -> list[list[str]]:
    inboxes: list[list[str]] = [[] for _ in range(count)]

    def sender(inbox: list[str]) -> Any:
        async def send(message: dict[str, Any]) -> None:
            inbox.append(message["text"])

        return send

    connections = [
        Connection(
            hub=hub,
            send=sender(inbox),
            policy=BufferPolicy(capacity=10, drop_oldest=False),
            user_id=number,
        )
        for number, inbox in enumerate(inboxes)
    ]
    await asyncio.gather(*(hub.register(connection, [group]) for connection in connections))
    for connection in connections:
        connection.start()
    return inboxes


@pytest.mark.parametrize("attempt", range(10))
def test_sockets_registering_while_the_transport_starts_all_get_the_broadcast(
    redis_url: str, settings: Any, attempt: int
) -> None:
    settings.EMPORIUM_REALTIME_REDIS_URL = redis_url
    group = f"start-race-{uuid.uuid4().hex[:8]}"
    publisher = redis.Redis.from_url(redis_url)

    async def scenario() -> list[list[str]]:
        hub = Hub(transport_factory=transport_for_settings)
        inboxes = await _registered_all_at_once(hub, group, 300)
        publisher.publish(channel_for(redis_url, group), "hello")
        deadline = time.monotonic() + 5
        while any(not inbox for inbox in inboxes) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in list(hub._tasks):
            task.cancel()
        return inboxes

    inboxes = asyncio.run(scenario())

    assert [inbox for inbox in inboxes if inbox != ["hello"]] == []
