"""The request id and trace context that follow a piece of work across processes.

A request's id (``X-Request-ID``, accepted from the client when it is well
formed, else made here) is bound to the context with structlog's
contextvars, so every log line written while that request, task or WebSocket
session runs carries it. Work that leaves the process takes a *carrier*
with it, a small dict of text: the outbox event stores one, a Celery message
has its values as headers, a call to the payment provider sends them as HTTP
headers. Whoever picks the work up binds it again with :func:`carried`.

When tracing is on (``emporium.observability.tracing``) the carrier also
holds the W3C ``traceparent`` of the current span, and :func:`carried`
continues that trace. When it is off, nothing here imports OpenTelemetry.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import structlog

HEADER = "X-Request-ID"
META_KEY = "HTTP_X_REQUEST_ID"
CARRIER_KEY = "request_id"  # the request id's name in a carrier, a task header, a log line
MAX_LENGTH = 128
# Letters, digits and the punctuation request-id generators use (UUIDs, ULIDs,
# base64url, "<host>/<n>"); nothing that could split a log line or a header.
_VALID = re.compile(rf"[A-Za-z0-9._:/+=@-]{{1,{MAX_LENGTH}}}")

_user_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "emporium_user_id", default=None
)

# Set by emporium.observability.tracing when a trace exporter is configured:
# (put the current trace context into a carrier, run work in a carrier's context,
# the current span's trace and span ids as hex or None).
_tracing: (
    tuple[
        Callable[[dict[str, str]], None],
        Callable[..., Any],
        Callable[[], tuple[str, str] | None],
    ]
    | None
) = None


def request_id_new() -> str:
    return secrets.token_hex(16)


def request_id_accept(value: str | None) -> str:
    """The client's id when it is well formed, else a new one."""
    if value and _VALID.fullmatch(value):
        return value
    return request_id_new()


def request_id_bind(request_id: str, **values: object) -> None:
    """Starts a new context (a request, a task, a session): only these values are bound."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id, **values)
    _user_id.set(None)


def user_id_bind(user_id: int) -> None:
    """Names the signed-in user on the rest of the request's lines (and its access line),
    for paths that authenticate without setting ``request.user``."""
    structlog.contextvars.bind_contextvars(user_id=user_id)
    _user_id.set(user_id)


def user_id_current() -> int | None:
    """The id :func:`user_id_bind` gave in this context (a variable of its own: cheaper to
    read than structlog's whole context)."""
    return _user_id.get()


def request_id_current() -> str | None:
    value = structlog.contextvars.get_contextvars().get(CARRIER_KEY)
    return value if isinstance(value, str) else None


def carrier() -> dict[str, str]:
    """What work leaving this process takes along: the request id, and the trace context."""
    values: dict[str, str] = {}
    request_id = request_id_current()
    if request_id is not None:
        values[CARRIER_KEY] = request_id
    if _tracing is not None:
        _tracing[0](values)
    return values


@contextlib.contextmanager
def carried(values: Mapping[str, object] | None, *, span_name: str | None = None) -> Iterator[None]:
    """Runs the block in the context a carrier describes, restoring the current one after.

    With tracing on and a ``span_name``, the block is a span of the carried
    trace (or of a new one when the carrier has none).
    """
    values = values or {}
    request_id = values.get(CARRIER_KEY)
    token = structlog.contextvars.bind_contextvars(
        request_id=request_id_accept(request_id if isinstance(request_id, str) else None)
    )
    try:
        if _tracing is not None and span_name is not None:
            with _tracing[1](values, span_name):
                yield
        else:
            yield
    finally:
        structlog.contextvars.reset_contextvars(**token)


def tracing_install(
    inject: Callable[[dict[str, str]], None],
    continue_in: Callable[..., Any],
    current_ids: Callable[[], tuple[str, str] | None],
) -> None:
    """Called once by the tracing setup; ``continue_in(carrier, name)`` is a context manager."""
    global _tracing  # one switch per process, set at startup
    _tracing = (inject, continue_in, current_ids)


def trace_ids() -> tuple[str, str] | None:
    """The current span's (trace id, span id) in hex; None without tracing or a span."""
    return _tracing[2]() if _tracing is not None else None


def tracing_uninstall() -> None:
    global _tracing  # one switch per process
    _tracing = None


def http_headers() -> dict[str, str]:
    """The carrier as HTTP headers, for calls to other services."""
    values = carrier()
    request_id = values.pop(CARRIER_KEY, None)
    if request_id is not None:
        values[HEADER] = request_id
    return values
