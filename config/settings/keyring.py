"""Key lists read from the environment, and keys made once per installation.

``ENCRYPTION_KEYS`` and ``JWT_PRIVATE_KEYS`` share one format, parsed here:
comma-separated ``<kid>:<base64 key>`` entries, newest first, the base64 in
either alphabet, a key id listed once. The token keys add an optional
``:<accept until>``. Profiles without the variable make their own key file once,
also here: written under a temporary name with mode 0600 and linked into place,
so processes starting together agree on one key, and refused once readable by
anyone but its owner.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class KeyEntry:
    kid: str
    key: bytes
    extra: str  # what followed a second ":", where the format has it

    def __repr__(self) -> str:  # never the key in a log or a traceback
        return f"KeyEntry(kid={self.kid!r}, extra={self.extra!r})"


def key_entries_parse(
    text: str,
    *,
    variable: str,
    kid_pattern: re.Pattern[str],
    key_bytes: int,
    algorithm: str,
    entry_format: str,
    with_extra: bool = False,
) -> list[KeyEntry]:
    """The entries of ``text``; ImproperlyConfigured names the variable and the first fault."""
    entries: list[KeyEntry] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        kid, _, encoded = entry.partition(":")
        extra = ""
        if with_extra:
            encoded, _, extra = encoded.partition(":")
        if not kid_pattern.fullmatch(kid) or not encoded:
            raise ImproperlyConfigured(f"{variable}: each entry is {entry_format}")
        try:
            key = base64.b64decode(
                encoded.strip().replace("-", "+").replace("_", "/"), validate=True
            )
        except (binascii.Error, ValueError) as error:
            raise ImproperlyConfigured(f"{variable}: key {kid} is not base64.") from error
        if len(key) != key_bytes:
            raise ImproperlyConfigured(
                f"{variable}: key {kid} has {len(key)} bytes; {algorithm} needs {key_bytes}."
            )
        if any(kid == known.kid for known in entries):
            raise ImproperlyConfigured(f"{variable}: key id {kid} is listed twice.")
        entries.append(KeyEntry(kid=kid, key=key, extra=extra.strip()))
    return entries


def installation_file(path: Path, make: Callable[[], str]) -> str:
    """The text of ``path``, first written with ``make()`` if it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(make())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(draft, path)
        finally:
            draft.unlink()
    if path.stat().st_mode & 0o077:
        raise ImproperlyConfigured(f"{path} must be readable by its owner only (chmod 600).")
    return path.read_text()
