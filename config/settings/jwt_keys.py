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
import binascii
import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

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
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        kid, _, rest = entry.partition(":")
        encoded, _, until = rest.partition(":")
        if not _KEY_ID.fullmatch(kid) or not encoded:
            raise ImproperlyConfigured(
                "JWT_PRIVATE_KEYS: each entry is <kid>:<base64 seed>[:<ISO time>], the kid "
                "1-32 of A-Z a-z 0-9 . _ -"
            )
        try:
            seed = base64.b64decode(
                encoded.strip().replace("-", "+").replace("_", "/"), validate=True
            )
        except (binascii.Error, ValueError) as error:
            raise ImproperlyConfigured(f"JWT_PRIVATE_KEYS: key {kid} is not base64.") from error
        if len(seed) != SEED_BYTES:
            raise ImproperlyConfigured(
                f"JWT_PRIVATE_KEYS: key {kid} has {len(seed)} bytes; Ed25519 needs {SEED_BYTES}."
            )
        accept_until = None
        if until:
            try:
                accept_until = datetime.fromisoformat(until.strip())
            except ValueError as error:
                raise ImproperlyConfigured(
                    f"JWT_PRIVATE_KEYS: key {kid} has an unreadable time {until!r}."
                ) from error
            if accept_until.tzinfo is None:
                accept_until = accept_until.replace(tzinfo=UTC)
        if any(kid == known.kid for known in keys):
            raise ImproperlyConfigured(f"JWT_PRIVATE_KEYS: key id {kid} is listed twice.")
        keys.append(JwtKey(kid=kid, seed=seed, accept_until=accept_until))
    return tuple(keys)


def jwt_key_entry(kid: str) -> str:
    """A new ``JWT_PRIVATE_KEYS`` entry with a random seed."""
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(SEED_BYTES)).decode()}"


def jwt_keys_local(path: Path) -> tuple[JwtKey, ...]:
    """This installation's own signing key, made on first use, for profiles without keys.

    The file (mode 0600, the ``JWT_PRIVATE_KEYS`` format) is written under a
    temporary name and linked into place, so processes starting together agree.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(jwt_key_entry(f"local-{secrets.token_hex(4)}") + "\n")
        try:
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink()
    keys = jwt_keys_parse(path.read_text())
    if not keys:
        raise ImproperlyConfigured(f"{path} holds no JWT key; delete it to make a new one.")
    return keys
