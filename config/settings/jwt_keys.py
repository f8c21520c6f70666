"""The JWT signing keys: parsed from ``JWT_PRIVATE_KEYS``, or made once per installation.

``JWT_PRIVATE_KEYS`` is a comma-separated list of ``<kid>:<seed>[:<accept until>]``
entries, newest first. ``<seed>`` is the base64 (either alphabet) of a 32-byte
Ed25519 private key, ``<kid>`` 1-32 characters of ``A-Z a-z 0-9 . _ -``, and the
optional ``<accept until>`` an ISO 8601 time (UTC when it names no zone).

The first key signs every new token; the others only verify, until their
``accept until`` passes. A key that is past it, or no longer listed, is
retired: tokens it signed are refused. ``manage.py jwt_key_generate`` prints
a new entry.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.settings.keyring import installation_file, key_entries_parse

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
SEED_BYTES = 32  # an Ed25519 private key


@dataclass(frozen=True)
class JwtKey:
    kid: str
    seed: bytes
    accept_until: datetime | None = None

    def __repr__(self) -> str:  # never the private key in a log or a traceback
        return f"JwtKey(kid={self.kid!r}, accept_until={self.accept_until!r})"


def jwt_keys_parse(text: str) -> tuple[JwtKey, ...]:
    """``JWT_PRIVATE_KEYS`` as keys, newest (the signing one) first."""
    keys: list[JwtKey] = []
    for entry in key_entries_parse(
        text,
        variable="JWT_PRIVATE_KEYS",
        kid_pattern=_KEY_ID,
        key_bytes=SEED_BYTES,
        algorithm="Ed25519",
        entry_format="<kid>:<base64 seed>[:<ISO time>], the kid 1-32 of A-Z a-z 0-9 . _ -",
        with_extra=True,
    ):
        accept_until = None
        if entry.extra:
            try:
                accept_until = datetime.fromisoformat(entry.extra)
            except ValueError as error:
                raise ImproperlyConfigured(
                    f"JWT_PRIVATE_KEYS: key {entry.kid} has an unreadable time {entry.extra!r}."
                ) from error
            if accept_until.tzinfo is None:
                accept_until = accept_until.replace(tzinfo=UTC)
        keys.append(JwtKey(kid=entry.kid, seed=entry.key, accept_until=accept_until))
    return tuple(keys)


def jwt_key_entry(kid: str) -> str:
    """A new ``JWT_PRIVATE_KEYS`` entry with a random seed."""
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(SEED_BYTES)).decode()}"


def jwt_keys_local(path: Path) -> tuple[JwtKey, ...]:
    """This installation's own signing key, made on first use, for profiles without keys.

    The file is in the ``JWT_PRIVATE_KEYS`` format, made and guarded by
    :func:`config.settings.keyring.installation_file`.
    """
    text = installation_file(path, lambda: jwt_key_entry(f"local-{secrets.token_hex(4)}") + "\n")
    keys = jwt_keys_parse(text)
    if not keys:
        raise ImproperlyConfigured(f"{path} holds no JWT key; delete it to make a new one.")
    return keys
