"""Turns the database's highlight markers into safe HTML.

PostgreSQL's ts_headline and SQLite's highlight()/snippet() copy the product
text as it is, so their output cannot be trusted as HTML. They are asked to
wrap matches in two private-use characters instead of tags; the text is then
HTML-escaped and only those markers become ``<mark>`` elements. The markers
are paired here (a stray one in product text is dropped or closed), so the
result is always well-formed and ``<mark>`` is the only tag in it.
"""

from __future__ import annotations

import html
import re

MARK_START = "\ue000"
MARK_END = "\ue001"
_MARKERS = re.compile(f"[{MARK_START}{MARK_END}]")


def highlight_markup(text: str) -> str:
    escaped = html.escape(text, quote=True)
    if MARK_START not in escaped and MARK_END not in escaped:
        return escaped
    # Between markers the text is copied as one slice, not character by character.
    parts: list[str] = []
    open_mark = False
    position = 0
    for marker in _MARKERS.finditer(escaped):
        parts.append(escaped[position : marker.start()])
        position = marker.end()
        if marker.group() == MARK_START:
            if not open_mark:
                parts.append("<mark>")
                open_mark = True
        elif open_mark:
            parts.append("</mark>")
            open_mark = False
    parts.append(escaped[position:])
    if open_mark:
        parts.append("</mark>")
    return "".join(parts)


def strip_markers(text: str) -> str:
    return text.replace(MARK_START, "").replace(MARK_END, "")
