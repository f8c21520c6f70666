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
