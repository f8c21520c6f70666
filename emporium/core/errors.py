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


# PostgreSQL refusing a new connection: too_many_connections, cannot_connect_now.
_OVERLOAD_SQLSTATES = frozenset({"53300", "57P03"})
# A refusal at connection time carries no SQLSTATE in libpq, only the server's
# message: these are those two conditions' messages.
_OVERLOAD_MESSAGES = (
    "too many clients already",
    "too many connections for",
    "remaining connection slots are reserved",
    "the database system is starting up",
    "the database system is shutting down",
)


def database_overloaded(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the database has no connection to give.

    A process's pool found none free in DATABASE_POOL_TIMEOUT (``PoolTimeout``),
    or the server refused a new one (its ``max_connections`` reached, or still
    starting). Nothing was written: a retry is safe. Django wraps both in its
    own ``OperationalError``, so the chain of causes is followed.
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
            message in str(current) for message in _OVERLOAD_MESSAGES
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def service_busy_headers() -> dict[str, str]:
    return {"Retry-After": str(ServiceBusy.retry_after_seconds)}
