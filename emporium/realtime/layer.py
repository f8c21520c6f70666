"""A Channels layer that does group fan-out through the realtime hub.

Other apps keep the stock Channels way of pushing to sockets::

    await get_channel_layer().group_send("dashboard", {"type": "dashboard.event", "event": {...}})

and every socket subscribed to the group receives ``json.dumps(event)``. The
event is serialised once, here, and travels through
:mod:`emporium.realtime.transport` (Redis pub/sub in production, the process's
own hub in the embedded profile). Stock layers instead copy the message into
one per-connection channel and wake a consumer per socket that hops to a
thread; that costs about 20 times the delivery rate (docs/adr/0014).

Only group sends are supported: the realtime consumers do not use per-channel
messages, so ``send``/``receive``/``group_add`` refuse clearly rather than
silently dropping messages.
"""

from __future__ import annotations

from typing import Any

from channels.layers import BaseChannelLayer

from emporium.realtime.transport import apublish_text, dumps

# Message types whose "event" is forwarded to the sockets as JSON text.
FORWARDED_TYPES = frozenset({"dashboard.event", "realtime.event"})


class HubChannelLayer(BaseChannelLayer):
    extensions = ["groups"]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if not isinstance(message, dict) or message.get("type") not in FORWARDED_TYPES:
            raise ValueError(
                "realtime groups accept only {'type': 'dashboard.event' or 'realtime.event', "
                "'event': {...}} messages"
            )
        self.require_valid_group_name(group)
        await apublish_text(group, dumps(message["event"]))

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        raise NotImplementedError("the realtime layer only sends to groups")

    async def receive(self, channel: str) -> dict[str, Any]:
        raise NotImplementedError("the realtime layer has no per-connection channels")

    async def new_channel(self, prefix: str = "specific.") -> str:
        raise NotImplementedError("the realtime layer has no per-connection channels")

    async def group_add(self, group: str, channel: str) -> None:
        raise NotImplementedError("realtime consumers join groups through the hub")

    async def group_discard(self, group: str, channel: str) -> None:
        raise NotImplementedError("realtime consumers leave groups through the hub")

    async def flush(self) -> None:
        return None
