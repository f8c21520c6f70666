"""WebSocket authentication: the API's JWT access token, never in the URL.

A client presents the token in one of two ways:

* the ``Sec-WebSocket-Protocol`` header, as two offered subprotocols:
  ``emporium.jwt`` and the token itself (a JWT is a valid subprotocol token).
  The server answers with ``emporium.jwt`` only, never echoing the token;
* the first message after the socket opens: ``{"type": "auth", "token": "…"}``.

URLs end up in access logs and browser history; headers and frames do not.
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import Token

from emporium.accounts.models import User
from emporium.core.parsers import JSONTooDeep, json_loads

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
        message = json_loads(text)  # the one depth limit: a deep message is malformed
    except (ValueError, JSONTooDeep):
        return None
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    token = message.get("token")
    return token if isinstance(token, str) and token else None


@dataclass(frozen=True)
class TokenIdentity:
    """Whom a token with a valid signature, expiry and type names (the account is not read yet)."""

    user_id: int
    expires_at: float | None
    token: Token


def token_identity(token: str) -> TokenIdentity | None:
    """The user id an access token carries; None for any invalid token. No database query.

    The socket is registered under this id before the account is read (see
    ``Hub.register``), so a revocation racing the connection still reaches it.
    """
    authentication = JWTAuthentication()
    try:
        validated = authentication.get_validated_token(token.encode())
    except (InvalidToken, TokenError, AuthenticationFailed):
        return None
    # simplejwt writes the id as a string ("7"); the hub indexes users by the integer.
    claim = validated.get(jwt_settings.USER_ID_CLAIM)
    text = str(claim) if isinstance(claim, int | str) and not isinstance(claim, bool) else ""
    if not (text.isascii() and text.isdecimal()) or len(text) > 19:
        return None
    user_id = int(text)
    expires = validated.get("exp")
    return TokenIdentity(
        user_id=user_id, expires_at=float(expires) if expires else None, token=validated
    )


def user_for_identity(identity: TokenIdentity) -> Authenticated | None:
    """The token's user if the account still exists and is active; None otherwise.

    With :func:`token_identity`, the same validation as the REST API
    (simplejwt: signature, expiry, token type, active user), so a token works
    on both or on neither. Queries the database: call it through
    ``database_sync_to_async``.
    """
    authentication = JWTAuthentication()
    try:
        user = authentication.get_user(identity.token)
    except (InvalidToken, TokenError, AuthenticationFailed):
        return None
    if not isinstance(user, User) or not user.is_active or user.pk != identity.user_id:
        return None
    return Authenticated(user=user, expires_at=identity.expires_at)


def session_user_still_active(user_id: int) -> Authenticated | None:
    """A session's user, read again after the socket registered; None once inactive or deleted."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    return Authenticated(user=user, expires_at=None) if user is not None else None
