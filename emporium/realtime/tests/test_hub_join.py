"""Joining groups while the connection is closed under it.

Subscribing a group waits on the transport; a revocation of the socket's user
can arrive in that wait. The socket must then not start delivering: ``join``
says whether the connection is still open once it returns.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from emporium.realtime import groups as group_names
from emporium.realtime.hub import BufferPolicy, Connection, Hub, LocalTransport


class _RevokingTransport(LocalTransport):
    """Delivers a revocation of ``user_id`` while the first subscription is under way."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id

    async def subscribe(self, hub: Hub, group: str) -> None:
        await asyncio.sleep(0)
        hub.deliver(group_names.REVOCATIONS, json.dumps({"user_id": self.user_id}))


def _connection(hub: Hub, user_id: int, sent: list[dict[str, Any]]) -> Connection:
    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return Connection(
        hub=hub, send=send, policy=BufferPolicy(capacity=10, drop_oldest=False), user_id=user_id
    )


def test_join_reports_a_connection_revoked_while_its_groups_were_subscribed() -> None:
    async def scenario() -> tuple[bool, bool, list[dict[str, Any]]]:
        hub = Hub(transport_factory=lambda: _RevokingTransport(user_id=7))
        sent: list[dict[str, Any]] = []
        connection = _connection(hub, 7, sent)
        await hub.register(connection)
        still_open = await hub.join(connection, ["orders.7"])
        await asyncio.gather(*hub._tasks)
        return still_open, connection.registered, sent

    still_open, registered, sent = asyncio.run(scenario())

    assert still_open is False
    assert registered is False
    assert sent == [{"type": "websocket.close", "code": 4401}]


def test_join_reports_an_open_connection_once_its_groups_are_subscribed() -> None:
    async def scenario() -> tuple[bool, tuple[str, ...]]:
        hub = Hub(transport_factory=LocalTransport)
        connection = _connection(hub, 8, [])
        await hub.register(connection)
        still_open = await hub.join(connection, ["orders.8"])
        return still_open, connection.groups

    assert asyncio.run(scenario()) == (True, ("orders.8",))
