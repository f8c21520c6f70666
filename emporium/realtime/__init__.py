"""Real-time delivery over WebSockets: see docs/realtime.md.

What other apps need is importable from here without pulling in models:
:func:`broadcast`, :func:`connections_open`, :func:`transport_healthy` (for a
readiness check) and :func:`user_sockets_revoke`.
"""

from __future__ import annotations

from typing import Any


def broadcast(group: str, payload: Any) -> None:
    """Sends ``payload`` as JSON to every socket in ``group``, in every server process.

    Immediate (call it after your transaction has committed, or use
    ``emporium.realtime.services.publish_after_commit``). Safe from any thread.
    """
    from emporium.realtime.transport import dumps, publish_text

    publish_text(group, dumps(payload))


def connections_open() -> int:
    """Open, authenticated WebSocket connections across all server processes."""
    from emporium.realtime.transport import connections_open as count

    return count()


def transport_healthy() -> bool:
    """Whether this process's realtime transport is connected (a readiness signal).

    False while a WebSocket server process has lost its Redis pub/sub
    connection and is reconnecting: it then refuses new sockets with 1012.
    True once reconnected, in the embedded profile (no Redis), and in a process
    that serves no WebSockets (it has no transport).
    """
    from emporium.realtime.hub import HUB

    return HUB.transport_healthy()
