"""Real-time delivery over WebSockets: see docs/realtime.md.

The two functions other apps need are importable from here without pulling
in models: :func:`broadcast` and :func:`connections_open`.
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
