"""What checking an access token costs, beside an HMAC token checked by PyJWT alone.

    python -m bench.tokens [--tokens 5000]

Every authenticated request checks its token once (signature, key id, claims),
through ``emporium.accounts.tokens`` as simplejwt's backend. The reference, run
in the same process and the same seconds, is PyJWT decoding an HS256 token with
the same claims: the cost of a token check without the asymmetric signature or
the project's rules. Both figures are CPU time per token on one core.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import django


def _per_token(check: Callable[[Any], object], token: object, count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        check(token)
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=5000)
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    django.setup()

    import jwt
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.tokens import AccessToken

    user = SimpleNamespace(pk=1, id=1, is_active=True)
    access = AccessToken.for_user(user)  # type: ignore[type-var]  # only pk and id are read
    ed25519 = str(access).encode()
    hmac_key = secrets.token_urlsafe(64)
    claims = jwt.decode(ed25519, options={"verify_signature": False})
    hs256 = jwt.encode(claims, hmac_key, algorithm="HS256")
    audience = claims["aud"]

    def check_hs256(token: str) -> object:
        return jwt.decode(token, hmac_key, algorithms=["HS256"], audience=audience)

    authentication = JWTAuthentication()
    check_ed25519 = authentication.get_validated_token
    for check, token in ((check_ed25519, ed25519), (check_hs256, hs256)):
        _per_token(check, token, 200)  # warm up

    rows = []
    for _ in range(3):  # interleaved, so a noisy second weighs on both alike
        rows.append(
            (
                _per_token(check_ed25519, ed25519, options.tokens),
                _per_token(check_hs256, hs256, options.tokens),
            )
        )
    print(f"{'run':>3}  {'Ed25519 check, us':>18}  {'reference HS256, us':>19}  {'ratio':>5}")
    for number, (ours, reference) in enumerate(rows, 1):
        print(f"{number:>3}  {ours:>18.1f}  {reference:>19.1f}  {ours / reference:>5.1f}")


if __name__ == "__main__":
    main()
