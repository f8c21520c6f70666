"""Bearer-token authentication for the API without a PostgreSQL round trip per request.

:class:`BearerAuthentication` is simplejwt's ``JWTAuthentication`` with two
things kept in the process instead of recomputed on every request:

- **the verified token.** Checking an Ed25519 signature and the claim rules
  (``emporium.accounts.tokens``) costs about 0.18 ms; a client sends the same
  access token on every call for 15 minutes. A token that passed every rule is
  remembered by its exact bytes, and each later use checks again what can
  change: its expiry (``exp``, simplejwt's own check) and whether the key that
  signed it is still accepted (``kid``, the key ring). At most
  ``VERIFIED_MAX`` tokens are kept.
- **the user**: built from the token's ``user_id`` and the account's state
  (``emporium.accounts.access.user_state``: active flag, public fields and
  permissions, at most ``AUTH_STATE_LOCAL_SECONDS`` old after a committed
  change), never from a query.

The refusals are simplejwt's, with its messages and codes: an invalid or expired
token, an account that does not exist (``user_not_found``) or is inactive
(``user_inactive``). :func:`bearer_user` gives the same answer to code that
answers requests before DRF (the lean gateway, checkout's lean path).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from django.http import HttpRequest
from django.utils.translation import gettext as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework.exceptions import AuthenticationFailed as DrfAuthenticationFailed
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken, Token

from emporium.accounts.access import UserState, user_state
from emporium.accounts.models import User
from emporium.accounts.tokens import valid_user_id, verifying_key

VERIFIED_MAX = 8192

# raw token bytes -> (the verified token, its header's kid, the time from which it is expired)
_verified: dict[bytes, tuple[Token, str, float]] = {}


def _kid(raw: bytes) -> str:
    return str(jwt.get_unverified_header(raw).get("kid"))


def _expired_from(token: Token) -> float:
    """simplejwt's rule: expired once ``exp`` <= now - leeway."""
    leeway = token.get_token_backend().get_leeway().total_seconds()
    return float(token["exp"]) + leeway


def verified_access_token(raw: bytes) -> Token:
    """The access token ``raw`` once every rule holds; ``InvalidToken`` (401) otherwise.

    A remembered token is used again only while it has not expired and the key
    that signed it is still accepted; otherwise it is forgotten and checked
    from scratch, which gives simplejwt's refusal.
    """
    held = _verified.get(raw)
    if held is not None:
        token, kid, expired_from = held
        if time.time() < expired_from and verifying_key(kid) is not None:
            return token
        del _verified[raw]
    token = _validated(raw)
    if len(_verified) >= VERIFIED_MAX:
        _verified.clear()
    _verified[raw] = (token, _kid(raw), _expired_from(token))
    return token


def _validated(raw: bytes) -> Token:
    """simplejwt's validation of an access token (the key ring's rules, expiry, token type)."""
    try:
        return AccessToken(raw)  # type: ignore[arg-type]
    except TokenError as error:
        raise InvalidToken(
            {
                "detail": _("Given token not valid for any token type"),
                "messages": [
                    {
                        "token_class": AccessToken.__name__,
                        "token_type": AccessToken.token_type,
                        "message": error.args[0],
                    }
                ],
            }
        ) from error


def _active_state(token: Token) -> UserState:
    """The state of the active account a verified token names; refused as simplejwt refuses."""
    try:
        user_id = token[api_settings.USER_ID_CLAIM]
    except KeyError as error:
        raise InvalidToken(_("Token contained no recognizable user identification")) from error
    if not valid_user_id(user_id):
        raise InvalidToken(_("Token contained no recognizable user identification"))
    state = user_state(int(user_id))
    if state is None:
        raise AuthenticationFailed(_("User not found"), code="user_not_found")
    if not state.is_active:
        raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
    return state


def token_user(token: Token) -> User:
    """The active account a verified token names, from its state; refusals are simplejwt's."""
    return _active_state(token).user()


@dataclass(frozen=True)
class SignedInUser:
    """What a read answered in front of Django knows of its caller: the id and permissions.

    Building a ``User`` model instance cost more than a whole cached product read;
    the gateway's handlers read only ``pk`` and ``has_perm``, and the access log
    ``pk`` and ``is_authenticated``.
    """

    pk: int
    is_superuser: bool
    permissions: frozenset[str]
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True

    @property
    def id(self) -> int:
        return self.pk

    def has_perm(self, perm: str, obj: object = None) -> bool:
        """As Django's for an active account (a superuser has every permission)."""
        return obj is None and (self.is_superuser or perm in self.permissions)


class BearerAuthentication(JWTAuthentication):
    """simplejwt's authentication with the verified token and the user's state kept in memory."""

    def get_validated_token(self, raw_token: bytes) -> Token:
        return verified_access_token(raw_token)

    def get_user(self, validated_token: Token) -> Any:
        return token_user(validated_token)


_authentication = BearerAuthentication()


def bearer_user(request: HttpRequest) -> SignedInUser | None:
    """The caller of a request's valid Bearer token, or None for what DRF would answer otherwise.

    None means: no Bearer token, a malformed header, an invalid or expired token,
    an unknown or inactive account. DRF's path then gives its answer (a 401, or
    an anonymous request for an ``Authorization`` scheme that is not Bearer).
    """
    try:
        header = _authentication.get_header(request)  # type: ignore[arg-type]
        raw = _authentication.get_raw_token(header) if header is not None else None
        if raw is None:
            return None
        state = _active_state(verified_access_token(raw))
    except (DrfAuthenticationFailed, TokenError):
        return None
    return SignedInUser(pk=state.id, is_superuser=state.is_superuser, permissions=state.permissions)


def bearer_user_id(request: HttpRequest | Request) -> int | None:
    """The user id of a valid Bearer access token, checked as :func:`bearer_user` checks it."""
    user = bearer_user(request)
    return None if user is None else user.pk


def verified_tokens_reset() -> None:
    """Drops the remembered tokens (tests)."""
    _verified.clear()


class BearerScheme(SimpleJWTScheme):
    """The OpenAPI document describes BearerAuthentication as simplejwt's Bearer scheme."""

    target_class = "emporium.accounts.authentication.BearerAuthentication"
