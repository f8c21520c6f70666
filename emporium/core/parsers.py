"""JSON request bodies, parsed with a bound on nesting: the one home of that limit.

Python's ``json`` and msgspec both descend recursively, so a small body of ten
thousand ``[`` (20 KB) exhausts the stack and would end as a 500. Every body
that the API decodes is first measured by :func:`json_depth_check`, which
refuses nesting deeper than :data:`JSON_MAX_DEPTH` with ``400
malformed_request``: DRF's parser (:class:`JSONParser`, the project's only JSON parser),
:func:`json_loads` for views that read the raw body (the payment webhook) and
the telemetry fast path before msgspec.

The measure does not decode. Escapes are dropped first (an escaped quote
cannot close a string), then every byte but quotes and brackets, then strings
with whatever brackets they held; what is left is the document's brackets,
and each pass of removing adjacent ``[]`` and ``{}`` pairs peels one level, so
a document is too deep exactly when pairs remain after ``JSON_MAX_DEPTH``
passes. It runs on bytes at C speed (a few milliseconds for a 1.4 MB
telemetry batch, several times less than decoding it). Brackets that do not
pair up can only come from a document that is not JSON: when more than
``JSON_MAX_DEPTH`` openers are left unmatched it is refused here too, otherwise
the decoder, which then descends at most twice the limit, names the error.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

JSON_MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a request body (``[[1]]`` is 2)."""

_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in _STRUCTURE)
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
_UTF8_ALIASES = frozenset({"utf-8", "utf8", "ascii", "us-ascii"})


class JSONTooDeep(ParseError):
    """A body that cannot be read within the limit: DRF's ParseError, so every place that
    handles an unreadable body (views, sign-in throttles) handles this one too."""

    default_detail = f"The JSON body is nested deeper than {JSON_MAX_DEPTH} levels."


def _openers(brackets: bytes) -> int:
    return brackets.count(b"[") + brackets.count(b"{")


def json_depth_exceeds(document: bytes, max_depth: int = JSON_MAX_DEPTH) -> bool:
    """Whether ``document`` (JSON or NDJSON, UTF-8) nests deeper than ``max_depth``."""
    if b"\\" in document:
        document = document.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Two quotes side by side hold no bracket: dropping them keeps the rest paired.
    structure = document.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if _openers(structure) <= max_depth:
        return False
    brackets = b"".join(structure.split(b'"')[::2]) if b'"' in structure else structure
    for _ in range(max_depth):
        brackets, peeled = _INNERMOST_PAIR.subn(b"", brackets)
        if not brackets:
            return False
        if not peeled:
            break
    if _INNERMOST_PAIR.search(brackets):
        return True
    return _openers(brackets) > max_depth


def json_depth_check(document: bytes | str) -> None:
    """Raises :class:`JSONTooDeep` (400) when ``document`` nests deeper than the limit."""
    raw = document.encode("utf-8", "surrogatepass") if isinstance(document, str) else document
    if json_depth_exceeds(raw):
        raise JSONTooDeep()


def json_loads(document: bytes | str, **options: Any) -> Any:
    """``json.loads`` behind the depth check; its ``ValueError`` is the caller's to handle."""
    json_depth_check(document)
    return json.loads(document, **options)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser behind the depth check; DRF's answers for everything else."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw: bytes = stream.read() if stream is not None else b""
        # DRF refuses (400) a charset that is not a text encoding, such as bz2_codec.
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        if encoding.lower().replace("_", "-") in _UTF8_ALIASES:
            json_depth_check(raw)
        else:
            # A body that is not in its charset is DRF's parser's to refuse, below.
            with contextlib.suppress(UnicodeDecodeError):
                json_depth_check(raw.decode(encoding))
        return super().parse(io.BytesIO(raw), media_type, parser_context)
