"""What counts as a real secret, and where the embedded profile keeps its own.

One rule for every profile that faces real data (production, and the embedded
profile pointed at a database server): a secret must come from the
environment, must not be a value this repository publishes (the placeholders
of ``.env.example``, old defaults), and an HMAC key must carry at least 256
bits (32 bytes) of entropy, estimated from its length and alphabet.

The embedded profile on SQLite needs no configuration: it generates its keys
once per installation and keeps them in a file readable by its owner only
(``SECRETS_PATH``, default ``var/secrets.json``), so no two installations share
a key and none is ever a published one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from config.settings.env import Environment

# Values published in this repository. A deployment that copied one of them
# signs its tokens and callbacks with a key everyone has.
PUBLISHED_SECRETS = frozenset(
    {
        # The embedded profile's former fixed keys.
        "embedded-profile-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz",
        "simulator-webhook-secret",
        # .env.example
        "change-me-to-50-plus-random-characters",
        "change-me-to-another-50-plus-random-characters",
        "change-me-to-the-providers-signing-secret",
        "change-me",
    }
)
# Any value containing one of these is a placeholder someone forgot to replace.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "not-secret", "django-insecure")

# Variables that configured something this code no longer does, and what replaced it.
# A deployment that still sets one expects an effect it does not get: it is refused.
RETIRED_VARIABLES = {
    "JWT_SIGNING_KEY": (
        "JWT_SIGNING_KEY is no longer read: tokens are signed with Ed25519 keys from "
        "JWT_PRIVATE_KEYS (manage.py jwt_key_generate); remove JWT_SIGNING_KEY."
    ),
}

MIN_SECRET_BITS = 256
# Django's own deploy check (security.W009) asks this much of SECRET_KEY.
MIN_SECRET_KEY_LENGTH = 50
# Distinct characters below which a value is a pattern, not a random string.
MIN_DISTINCT_CHARACTERS = 8

# The keys the embedded profile generates, by the environment variable that overrides each.
INSTALLATION_SECRET_NAMES = ("SECRET_KEY", "PAYMENT_WEBHOOK_SECRET")
# Service URLs whose password must not be .env.example's.
SERVICE_URL_NAMES = ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "EMAIL_URL")

_BASE64 = frozenset(string.ascii_letters + string.digits + "+/=-_")
_HEX = frozenset(string.hexdigits)


def estimated_bits(value: str) -> float:
    """Entropy of ``value`` if it were drawn at random from the smallest alphabet that holds it.

    Hex strings count 4 bits a character, base64 (either alphabet) 6, anything
    else 6.55 (printable ASCII). An over-estimate for a value a person typed;
    :data:`MIN_DISTINCT_CHARACTERS` and the placeholder list catch the usual ones.
    """
    characters = set(value)
    if characters <= _HEX:
        alphabet = 16
    elif characters <= _BASE64:
        alphabet = 64
    else:
        alphabet = max(95, len(characters))
    return len(value) * math.log2(alphabet)


def is_published(value: str) -> bool:
    lowered = value.strip().lower()
    return lowered in PUBLISHED_SECRETS or any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def secret_problem(name: str, value: str | None, *, hmac_key: bool = True) -> str | None:
    """Why ``value`` cannot be used as the secret ``name``; None when it can."""
    if not value:
        return f"{name} is not set."
    if is_published(value):
        return f"{name} is a published placeholder value; generate a new one."
    if hmac_key:
        if len(set(value)) < MIN_DISTINCT_CHARACTERS or estimated_bits(value) < MIN_SECRET_BITS:
            return (
                f"{name} is too weak: an HMAC key needs at least {MIN_SECRET_BITS // 8} random "
                "bytes, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(64))'."
            )
        if name == "SECRET_KEY" and len(value) < MIN_SECRET_KEY_LENGTH:
            return f"{name} must be at least {MIN_SECRET_KEY_LENGTH} characters long."
    return None


def url_password_problem(name: str, url: str | None) -> str | None:
    """A service URL whose password is a published placeholder (``.env.example``'s)."""
    if not url:
        return None
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password and is_published(password):
            return f"{name} carries a published placeholder password; set the real one."
    return None


def problems(
    values: Mapping[str, str | None],
    *,
    required: Iterable[str] = (),
    hmac_keys: Iterable[str] = (),
    urls: Iterable[str] = (),
) -> list[str]:
    """Every problem with ``values`` (name -> value): unset required, weak or published ones."""
    required, hmac_keys = set(required), set(hmac_keys)
    found: list[str] = []
    for name, value in values.items():
        if name in urls:
            problem = url_password_problem(name, value)
        elif value or name in required:
            problem = secret_problem(name, value, hmac_key=name in hmac_keys)
        else:
            problem = None
        if problem:
            found.append(problem)
    return found


def environment_problems(env: Environment, *, require_secret_key: bool) -> list[str]:
    """Every problem with the secrets ``env`` gives, by the one rule above.

    The token keys (JWT_PRIVATE_KEYS) are Ed25519 keys, judged by their own
    format in config.settings.jwt_keys, not here.
    """
    retired = [RETIRED_VARIABLES[name] for name in env.retired_variables]
    values: dict[str, str | None] = {
        "SECRET_KEY": env.secret_key,
        "PAYMENT_WEBHOOK_SECRET": env.payment_webhook_secret,
        "PAYMENT_PROVIDER_API_KEY": env.payment_provider_api_key,
        "DATABASE_URL": env.database_url,
        "REDIS_URL": env.redis_url,
        "BROKER_URL": env.broker_url,
        "EMAIL_URL": env.email_url,
        "METRICS_TOKEN": env.metrics_token,
    }
    return retired + problems(
        values,
        required=("SECRET_KEY",) if require_secret_key else (),
        hmac_keys={"SECRET_KEY", "PAYMENT_WEBHOOK_SECRET", "METRICS_TOKEN"},
        urls=SERVICE_URL_NAMES,
    )


def installation_secrets(path: Path) -> dict[str, str]:
    """This installation's generated keys, created on first use with mode 0600.

    Two processes starting at once (``make run`` starts several) agree: the
    file is written under a temporary name and linked into place only if no
    other process got there first, in which case that one's keys are read.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = _read(path)
    if stored is not None and all(stored.get(name) for name in INSTALLATION_SECRET_NAMES):
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return stored
    generated = {name: secrets.token_urlsafe(64) for name in INSTALLATION_SECRET_NAMES}
    if stored is not None:  # keep the keys it has, add the missing ones
        generated.update({name: value for name, value in stored.items() if value})
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(generated, handle, indent=2)
        if stored is None:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return installation_secrets(path)
        else:
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return generated


def _read(path: Path) -> dict[str, str] | None:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise RuntimeError(f"{path} is not a readable secrets file: {error}") from error
    if not isinstance(loaded, dict):
        raise RuntimeError(f"{path} is not a readable secrets file.")
    return {str(name): str(value) for name, value in loaded.items()}
