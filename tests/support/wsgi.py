"""Calling a WSGI application as a server would, for tests of what it sends."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def wsgi_call(
    application: Callable[..., Iterable[bytes]], environ: dict[str, Any]
) -> tuple[str, list[tuple[str, str]], bytes]:
    """The status line, the header list and the body; the result is closed as servers do."""
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"], started["headers"] = status, headers
        return lambda data: None

    result = application(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return started["status"], started["headers"], body
