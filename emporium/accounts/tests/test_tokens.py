"""Attacks on the tokens: forged claims, wrong audience, foreign algorithms, retired keys.

Every token here is built by hand and, unless the attack is about the
signature, signed with the server's own current key: what is tested is what
the server does with a token it signed (or seems to have signed) itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from config.settings.jwt_keys import jwt_key_entry, jwt_keys_parse
from emporium.accounts import tokens
from emporium.core.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ME_URL = "/api/auth/me/"
CHECKOUT_URL = "/api/orders/"
CART_URL = "/api/cart/"
JWKS_URL = "/api/auth/jwks/"


def claims_for(user_id: Any, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "token_type": "access",
        "exp": now + 300,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": user_id,
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        **overrides,
    }
    return {name: value for name, value in claims.items() if value is not ...}


def signed(claims: dict[str, Any], *, key: tokens.SigningKey | None = None) -> str:
    key = key or tokens.signing_keys()[0]
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT assembled byte by byte, HMAC-SHA256 signed with ``secret`` (or unsigned)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def answer(method: str, url: str, token: str) -> Any:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.generic(method, url, "{}", content_type="application/json")


def assert_refused(response: Any) -> None:
    assert response.status_code == 401, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] in {"authentication_failed", "not_authenticated"}


ENDPOINTS = [("GET", ME_URL), ("POST", CHECKOUT_URL), ("GET", CART_URL), ("GET", CHECKOUT_URL)]


# -- the user_id claim ------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_id",
    [2**70, 2**63, -1, 0, [1], {"id": 1}, "abc", "01", "1e3", " 1", 1.0, True, None, ""],
    ids=repr,
)
@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_a_signed_token_with_a_malformed_user_id_is_401(
    method: str, url: str, user_id: Any
) -> None:
    UserFactory()  # an account exists, so only the claim's shape can be at fault

    response = answer(method, url, signed(claims_for(user_id)))

    assert_refused(response)


@pytest.mark.parametrize("user_id", ["{pk}", "int"])
def test_a_well_formed_user_id_still_authenticates(user_id: str) -> None:
    user = UserFactory()
    claim: Any = user.pk if user_id == "int" else str(user.pk)

    response = answer("GET", ME_URL, signed(claims_for(claim)))

    assert response.status_code == 200, response.content
    assert response.json()["id"] == user.pk


# -- issuer, audience, required claims, algorithm ------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"},
        {"aud": ["someone-else"]},
        {"iss": "https://evil.example"},
        {"aud": ...},
        {"iss": ...},
        {"exp": ...},
        {"iat": ...},
        {"jti": ...},
        {"token_type": ...},
        {"exp": int(time.time()) - 1},
        {"token_type": "refresh"},
    ],
    ids=repr,
)
@pytest.mark.parametrize(("method", "url"), ENDPOINTS[:2])
def test_a_token_signed_by_our_key_but_for_another_audience_or_incomplete_is_401(
    method: str, url: str, overrides: dict[str, Any]
) -> None:
    user = UserFactory()

    response = answer(method, url, signed(claims_for(str(user.pk), **overrides)))

    assert_refused(response)


def test_alg_none_is_401() -> None:
    user = UserFactory()
    kid = tokens.signing_keys()[0].kid
    for alg in ("none", "None", "NONE"):
        token = hand_made({"alg": alg, "typ": "JWT", "kid": kid}, claims_for(str(user.pk)), None)
        assert_refused(answer("GET", ME_URL, token))


def test_hmac_tokens_are_401_even_keyed_with_the_published_public_key() -> None:
    """The classic confusion: the verifier's public key used as an HMAC secret."""
    user = UserFactory()
    key = tokens.signing_keys()[0]
    published = APIClient().get(JWKS_URL).json()["keys"][0]
    secrets_an_attacker_has = [
        key.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        key.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw),
        published["x"].encode(),
        json.dumps(published).encode(),
        settings.SECRET_KEY.encode(),
    ]
    for alg in ("HS256", "HS384", "HS512"):
        for secret in secrets_an_attacker_has:
            header = {"alg": alg, "typ": "JWT", "kid": key.kid}
            token = hand_made(header, claims_for(str(user.pk)), secret)
            assert_refused(answer("GET", ME_URL, token))
            assert_refused(answer("POST", CHECKOUT_URL, token))


def test_tokens_the_server_issues_carry_iss_aud_and_the_key_id() -> None:
    user = UserFactory()
    client = APIClient()
    body = client.post(
        "/api/auth/login/",
        {"username": user.username, "password": "correct-horse-battery-staple"},
        format="json",
    ).json()

    for token in (body["access"], body["refresh"]):
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "EdDSA"
        assert header["kid"] == tokens.signing_keys()[0].kid
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["iss"] == settings.JWT_ISSUER
        assert claims["aud"] == settings.JWT_AUDIENCE


# -- keys: rotation, retirement, the published set ------------------------------------------


def ring(*entries: str) -> Any:
    return override_settings(JWT_SIGNING_KEYS=jwt_keys_parse(",".join(entries)))


def test_after_rotation_a_token_signed_by_the_previous_key_is_accepted_during_its_grace() -> None:
    user = UserFactory()
    old, new = jwt_key_entry("old"), jwt_key_entry("new")
    grace = (timezone.now() + timedelta(days=7)).isoformat()
    with ring(old):
        token = signed(claims_for(str(user.pk)))

    with ring(new, f"{old}:{grace}"):
        assert answer("GET", ME_URL, token).status_code == 200
        fresh = signed(claims_for(str(user.pk)))
        assert jwt.get_unverified_header(fresh)["kid"] == "new"
        assert answer("GET", ME_URL, fresh).status_code == 200
        published = APIClient().get(JWKS_URL).json()
        assert [key["kid"] for key in published["keys"]] == ["new", "old"]


@pytest.mark.parametrize("retired", ["past", "unlisted"])
def test_a_token_signed_by_a_retired_key_is_401(retired: str) -> None:
    user = UserFactory()
    old, new = jwt_key_entry("old"), jwt_key_entry("new")
    with ring(old):
        token = signed(claims_for(str(user.pk)))

    ended = (timezone.now() - timedelta(seconds=1)).isoformat()
    keys = [new, f"{old}:{ended}"] if retired == "past" else [new]
    with ring(*keys):
        assert_refused(answer("GET", ME_URL, token))
        assert_refused(answer("POST", CHECKOUT_URL, token))
        published = APIClient().get(JWKS_URL).json()
        assert [key["kid"] for key in published["keys"]] == ["new"]


def test_a_token_with_an_unknown_or_missing_key_id_is_401() -> None:
    user = UserFactory()
    key = tokens.signing_keys()[0]
    for kid in ("nobody", None, [key.kid], {"kid": key.kid}):
        header = {"alg": "EdDSA", "typ": "JWT", **({} if kid is None else {"kid": kid})}
        body = json.dumps(claims_for(str(user.pk))).encode()
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(body)}"
        token = f"{signing_input}.{b64(key.private_key.sign(signing_input.encode()))}"
        assert_refused(answer("GET", ME_URL, token))


def test_the_published_key_set_verifies_the_servers_tokens_and_holds_no_private_part() -> None:
    user = UserFactory()
    token = signed(claims_for(str(user.pk)))

    for url in (JWKS_URL, "/.well-known/jwks.json"):
        response = APIClient().get(url)
        assert response.status_code == 200
        (published,) = response.json()["keys"]
        assert set(published) == {"kty", "crv", "x", "kid", "alg", "use"}
        verifier = jwt.PyJWK(published).key
        claims = jwt.decode(
            token,
            verifier,
            algorithms=["EdDSA"],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
        )
        assert claims["user_id"] == str(user.pk)


def test_the_embedded_profile_uses_a_key_of_this_installation() -> None:
    entry = settings.JWT_SIGNING_KEYS[0]
    assert len(entry.seed) == 32
    assert entry.seed not in {bytes(32), b"\x01" * 32}
    assert "seed" not in repr(entry)
    assert entry.seed.hex() not in repr(entry)
