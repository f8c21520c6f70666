"""The one error hierarchy. Domain apps subclass these with their own codes.

Every error leaves the API as ``{"error": {"code", "message", "details"}}``;
``emporium.core.exception_handler`` does the translation.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    status_code: int = 400
    code: str = "bad_request"
    default_message: str = "The request could not be processed."

    def __init__(
        self, message: str | None = None, *, details: Any = None, code: str | None = None
    ) -> None:
        self.message = message or self.default_message
        self.details = details if details is not None else {}
        if code is not None:
            self.code = code
        super().__init__(self.message)


class InvalidInput(ApplicationError):
    status_code = 400
    code = "validation_error"
    default_message = "The request contains invalid data."


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class PermissionDenied(ApplicationError):
    status_code = 403
    code = "permission_denied"
    default_message = "You do not have permission to perform this action."


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with the current state of the resource."


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


class ServiceBusy(ApplicationError):
    """The database cannot take the request now; the client should retry after a pause."""

    status_code = 503
    code = "service_busy"
    default_message = "The service is busy. Retry after the number of seconds in Retry-After."
    retry_after_seconds = 2


# PostgreSQL refusing a new connection: too_many_connections, cannot_connect_now;
# or ending one: admin_shutdown, crash_shutdown, and the connection_exception class.
_OVERLOAD_SQLSTATES = frozenset(
    {"53300", "57P03", "57P01", "57P02", "08000", "08001", "08003", "08004", "08006"}
)
# A refusal at connection time carries no SQLSTATE in libpq, only the server's
# message: these are those two conditions' messages.
_OVERLOAD_MESSAGES = (
    "too many clients already",
    "too many connections for",
    "remaining connection slots are reserved",
    "the database system is starting up",
    "the database system is shutting down",
    # The server cannot be reached, or went away: a stopped or lost primary, a cut
    # network. libpq's and psycopg's own words, compared in lower case.
    "connection refused",
    "connection failed",
    "could not connect",
    "timeout expired",
    "server closed the connection unexpectedly",
    "the connection is lost",
    "the connection is closed",
    "terminating connection due to administrator command",
    "terminating connection because of crash of another server process",
)


def database_overloaded(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the database has no connection to give.

    A process's pool found none free in DATABASE_POOL_TIMEOUT (``PoolTimeout``),
    the server refused a new one (its ``max_connections`` reached, or still
    starting), or it cannot be reached or dropped the connection (stopped,
    crashed, failing over, a cut network). The transaction did not commit,
    except in the one case of a connection lost while its COMMIT was on the
    way: a retry with the same ``Idempotency-Key`` is safe either way. Django
    wraps these in its own ``OperationalError``, so the chain of causes is followed.
    """
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover - installed with the PostgreSQL extras
        PoolTimeout = ()  # type: ignore[assignment,misc]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PoolTimeout):
            return True
        if getattr(current, "sqlstate", None) in _OVERLOAD_SQLSTATES:
            return True
        if type(current).__name__ == "OperationalError" and any(
            message in str(current).lower() for message in _OVERLOAD_MESSAGES
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def service_busy_headers() -> dict[str, str]:
    return {"Retry-After": str(ServiceBusy.retry_after_seconds)}
