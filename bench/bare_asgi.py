"""The bare ASGI reference: one response body, read once, answered from memory.

BARE_ASGI_BODY=body.json uvicorn bench.bare_asgi:app --workers 2
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_BODY = Path(os.environ.get("BARE_ASGI_BODY", "/dev/null")).read_bytes()
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
