"""Real-time delivery over WebSockets: see docs/realtime.md.

What other apps need is importable from here without pulling in models:
:func:`broadcast`, :func:`connections_open`, :func:`groups_listened`,
:func:`transport_healthy` (for a readiness check) and :func:`user_sockets_revoke`.
What other apps plug into realtime (who may watch a shipment, where a courier's
position goes) is registered in :mod:`emporium.realtime.providers`.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from emporium.realtime import transport
from emporium.realtime.groups import REVOCATIONS


def broadcast(group: str, payload: Any) -> None:
    """Sends ``payload`` as JSON to every socket in ``group``, in every server process.

    Immediate (call it after your transaction has committed, or use
    ``emporium.realtime.services.publish_after_commit``). Safe from any thread.
    """
    transport.publish_text(group, transport.dumps(payload))


def groups_listened(group_names: list[str]) -> set[str]:
    """Those of ``group_names`` that some open socket, in any server process, has joined."""
    return transport.groups_listened(group_names)


def connections_open() -> int:
    """Open, authenticated WebSocket connections across all server processes."""
    return transport.connections_open()


def transport_healthy() -> bool:
    """Whether this process's realtime transport is connected (a readiness signal).

    False while a WebSocket server process has lost its Redis pub/sub
    connection and is reconnecting: it then refuses new sockets with 1012.
    True once reconnected, in the embedded profile (no Redis), and in a process
    that serves no WebSockets (it has no transport).
    """
    return transport.HUB.transport_healthy()


def user_sockets_revoke(user_id: int) -> None:
    """Closes every WebSocket of the user, in every server process, with 4401.

    Registered with accounts (``accounts.revocation``): called where an account
    is deactivated or deleted, or its tokens are revoked (logout, a revoked
    refresh-token family). Inside a transaction it is sent when the
    transaction commits, never after a rollback; the client's reconnection is
    then checked like any new one. Best effort like every push; while Redis is
    down every socket is closed anyway (1012).
    """
    text = transport.dumps({"user_id": user_id})
    transaction.on_commit(lambda: transport.publish_text(REVOCATIONS, text))
