"""WebSocket authentication: the API's JWT access token, never in the URL.

A client presents the token in one of two ways:

* the ``Sec-WebSocket-Protocol`` header, as two offered subprotocols:
  ``emporium.jwt`` and the token itself (a JWT is a valid subprotocol token).
  The server answers with ``emporium.jwt`` only, never echoing the token;
* the first message after the socket opens: ``{"type": "auth", "token": "…"}``.

URLs end up in access logs and browser history; headers and frames do not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from emporium.accounts.models import User

TOKEN_SUBPROTOCOL = "emporium.jwt"  # noqa: S105 - a protocol name, not a secret


MAX_AUTH_MESSAGE_BYTES = 8192


@dataclass(frozen=True)
class Authenticated:
    user: User
    expires_at: float | None  # UNIX time the token stops being valid; None for a session


def token_from_subprotocols(subprotocols: list[str]) -> str | None:
    """The token offered beside ``emporium.jwt``, if the client used the header."""
    if TOKEN_SUBPROTOCOL not in subprotocols:
        return None
    others = [value for value in subprotocols if value != TOKEN_SUBPROTOCOL]
    return others[0] if others else ""


def token_from_message(text: str | None) -> str | None:
    """The token of a first message ``{"type": "auth", "token": "…"}``; None if malformed."""
    if text is None or len(text) > MAX_AUTH_MESSAGE_BYTES:
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    token = message.get("token")
    return token if isinstance(token, str) and token else None


def user_for_token(token: str) -> Authenticated | None:
    """The active user an access token belongs to; None for any invalid token.

    The same validation as the REST API (simplejwt: signature, expiry, token
    type, active user), so a token works on both or on neither. Queries the
    database: call it through ``database_sync_to_async``.
    """
    authentication = JWTAuthentication()
    try:
        validated = authentication.get_validated_token(token.encode())
        user = authentication.get_user(validated)
    except (InvalidToken, TokenError, AuthenticationFailed):
        return None
    if not isinstance(user, User) or not user.is_active:
        return None
    expires = validated.get("exp")
    return Authenticated(user=user, expires_at=float(expires) if expires else None)
