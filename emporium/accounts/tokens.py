"""How tokens are signed and verified: Ed25519 keys with ids, one allow-listed algorithm.

simplejwt builds and reads the tokens; this module is its only backend
(installed by ``AccountsConfig.ready``), so every token in the project, the
API's, the WebSocket's and the lean checkout's, is checked by the same rules:

* the header's ``alg`` must be one of ``settings.JWT_ALGORITHMS`` (EdDSA) and
  its ``kid`` must name a key that is still accepted: ``alg: none``, HMAC
  tokens (even one keyed with a published public key) and tokens signed by a
  retired key are refused before any signature is computed;
* ``iss``, ``aud``, ``exp``, ``iat``, ``jti`` and ``token_type`` must be
  present, ``iss`` and ``aud`` must be this deployment's;
* ``user_id`` must be a positive 64-bit integer (or its decimal string):
  a signed token carrying a list, a dict or 2**70 is invalid, not a 500.

The keys are ``settings.JWT_SIGNING_KEYS`` (config/settings/jwt_keys.py): the
first signs, the others verify until their ``accept_until``.
"""

from __future__ import annotations

import base64
import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken

from config.settings.jwt_keys import JwtKey

REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti", "token_type", "user_id")
MAX_USER_ID = 2**63 - 1  # the largest primary key the database can hold
_DECIMAL_ID = re.compile(r"[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    public_key: Ed25519PublicKey
    accept_until: datetime | None

    def accepted_at(self, now: datetime) -> bool:
        return self.accept_until is None or now < self.accept_until

    def jwk(self) -> dict[str, str]:
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }


@functools.lru_cache(maxsize=4)
def _signing_keys(configured: tuple[JwtKey, ...]) -> tuple[SigningKey, ...]:
    keys = []
    for entry in configured:
        private_key = Ed25519PrivateKey.from_private_bytes(entry.seed)
        keys.append(
            SigningKey(
                kid=entry.kid,
                private_key=private_key,
                public_key=private_key.public_key(),
                accept_until=entry.accept_until,
            )
        )
    return tuple(keys)


def signing_keys() -> tuple[SigningKey, ...]:
    """The configured keys, newest first; read at each use, so a settings change takes effect."""
    keys = _signing_keys(tuple(settings.JWT_SIGNING_KEYS))
    if not keys:
        raise TokenBackendError("No JWT signing key is configured.")
    return keys


def verifying_key(kid: object, *, now: datetime | None = None) -> SigningKey | None:
    """The key a token's ``kid`` names, if it is still accepted; the signing key always is."""
    keys = signing_keys()
    now = now or timezone.now()
    for index, key in enumerate(keys):
        if key.kid == kid:
            return key if index == 0 or key.accepted_at(now) else None
    return None


def jwks(*, now: datetime | None = None) -> dict[str, list[dict[str, str]]]:
    """The public half of every accepted key, as a JSON Web Key Set (RFC 7517)."""
    keys = signing_keys()
    now = now or timezone.now()
    return {
        "keys": [key.jwk() for index, key in enumerate(keys) if index == 0 or key.accepted_at(now)]
    }


def valid_user_id(value: object) -> bool:
    """A positive 64-bit integer, or its canonical decimal string; never a bool, list or dict."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 < value <= MAX_USER_ID
    if isinstance(value, str) and _DECIMAL_ID.fullmatch(value):
        return int(value) <= MAX_USER_ID
    return False


class KeyRingTokenBackend(TokenBackend):
    """simplejwt's backend with key ids, one algorithm, required claims and a typed user id."""

    def __init__(self) -> None:
        super().__init__(settings.JWT_ALGORITHMS[0])

    @property
    def audience(self) -> str:
        return str(settings.JWT_AUDIENCE)

    @audience.setter
    def audience(self, value: object) -> None:
        pass  # always the current setting

    @property
    def issuer(self) -> str:
        return str(settings.JWT_ISSUER)

    @issuer.setter
    def issuer(self, value: object) -> None:
        pass  # always the current setting

    def encode(self, payload: dict[str, Any]) -> str:
        key = signing_keys()[0]
        claims = {**payload, "iss": self.issuer, "aud": self.audience}
        return jwt.encode(
            claims,
            key.private_key,
            algorithm=settings.JWT_ALGORITHMS[0],
            headers={"kid": key.kid},
            json_encoder=self.json_encoder,
        )

    def decode(self, token: Any, verify: bool = True) -> dict[str, Any]:
        if not verify:
            # Only for reading a token's claims the caller checks some other way.
            try:
                return jwt.decode(token, options={"verify_signature": False})
            except jwt.InvalidTokenError as error:
                raise TokenBackendError("Token is invalid") from error
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise TokenBackendError("Token is invalid") from error
        if header.get("alg") not in settings.JWT_ALGORITHMS:
            raise TokenBackendError("Invalid algorithm specified")
        key = verifying_key(header.get("kid"))
        if key is None:
            raise TokenBackendError("Token is invalid")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=list(settings.JWT_ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.get_leeway(),
                options={"require": list(REQUIRED_CLAIMS), "verify_aud": True},
            )
        except jwt.ExpiredSignatureError as error:
            raise TokenBackendExpiredToken("Token is expired") from error
        except jwt.InvalidTokenError as error:
            raise TokenBackendError("Token is invalid") from error
        if not valid_user_id(payload.get(str(settings.SIMPLE_JWT["USER_ID_CLAIM"]))):
            raise TokenBackendError("Token is invalid")
        return payload


def install() -> None:
    """Makes :class:`KeyRingTokenBackend` the backend of every simplejwt token class.

    simplejwt looks ``rest_framework_simplejwt.state.token_backend`` up when a
    token is first built or read, so replacing it once at start-up covers every
    token class, including those used directly by other apps and by tests.
    """
    from rest_framework_simplejwt import state

    if not isinstance(state.token_backend, KeyRingTokenBackend):
        state.token_backend = KeyRingTokenBackend()
