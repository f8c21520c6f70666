"""WebSocket metrics: the open-connection gauge, messages sent, and messages dropped.

The gauge and the sent count are read through a real server and real sockets;
the drops through the hub itself, with a client that never reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from emporium.core.tests.factories import UserFactory
from emporium.observability.tests.metric_samples import sample
from emporium.realtime import groups
from emporium.realtime.hub import BufferPolicy, Connection, Hub, LocalTransport
from emporium.realtime.tests.conftest import (
    LiveServer,
    open_with_subprotocol,
    receive_json,
    token_for,
    welcomed,
)
from emporium.realtime.transport import dumps, publish_text
from tests.support.processes import wait_until


@pytest.mark.django_db(transaction=True)
def test_the_connection_gauge_goes_up_and_down_and_sent_messages_are_counted(
    live_ws: LiveServer,
) -> None:
    connections = "emporium_websocket_connections"
    user = UserFactory()
    token = token_for(user)
    base = sample(connections)
    with (
        open_with_subprotocol(live_ws, "/ws/notifications/", token) as first,
        open_with_subprotocol(live_ws, "/ws/notifications/", token) as second,
    ):
        welcomed(first)
        welcomed(second)
        assert wait_until(lambda: sample(connections) == base + 2, timeout=10)
        sent = sample("emporium_websocket_messages_sent_total")

        publish_text(groups.user_notifications(user.pk), dumps({"n": 1}))
        assert receive_json(first) == {"n": 1}
        assert receive_json(second) == {"n": 1}
        assert wait_until(lambda: sample("emporium_websocket_messages_sent_total") == sent + 2)

        first.close()
        assert wait_until(lambda: sample(connections) == base + 1, timeout=10)
        second.close()
        assert wait_until(lambda: sample(connections) == base, timeout=10)


def _stalled_connection(hub: Hub, policy: BufferPolicy) -> Connection:
    async def never_written(message: dict[str, Any]) -> None:
        await asyncio.Event().wait()  # a client that stopped reading

    return Connection(hub=hub, send=never_written, policy=policy, user_id=1)


def _dropped(reason: str) -> float:
    return sample("emporium_websocket_messages_dropped_total", reason=reason)


def test_a_full_reliable_buffer_counts_every_message_the_client_loses() -> None:
    async def scenario() -> bool:
        hub = Hub(transport_factory=LocalTransport)
        connection = _stalled_connection(hub, BufferPolicy(capacity=3, drop_oldest=False))
        await hub.register(connection, ["orders.1"])
        connection.start()
        for n in range(5):
            hub.deliver("orders.1", dumps({"n": n}))
        await asyncio.sleep(0)
        closing = connection.closing
        await hub.shutdown()
        return closing

    before = _dropped("slow_client")
    assert asyncio.run(scenario()) is True
    # Three wait in the buffer when the fourth overflows it: those four never reach
    # the client (the fifth finds the socket closing and is not offered).
    assert _dropped("slow_client") == before + 4


def test_a_full_snapshot_buffer_counts_the_entries_newer_ones_replace() -> None:
    async def scenario() -> int:
        hub = Hub(transport_factory=LocalTransport)
        connection = _stalled_connection(hub, BufferPolicy(capacity=2, drop_oldest=True))
        await hub.register(connection, ["dashboard"])
        for n in range(5):
            hub.deliver("dashboard", dumps({"n": n}))
        waiting = len(connection.buffer)
        await hub.shutdown()
        return waiting

    before = _dropped("superseded")
    assert asyncio.run(scenario()) == 2
    assert _dropped("superseded") == before + 3
