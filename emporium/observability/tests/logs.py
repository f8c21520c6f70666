"""Every log line a block writes, as the production formatter renders it (JSON, parsed)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emporium.observability.logging import logging_settings


class CapturedLogs:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("logger") == "emporium.access"]


@contextmanager
def logs_captured(level: int = logging.DEBUG) -> Iterator[CapturedLogs]:
    """Adds a JSON handler on the root logger at ``level`` for the block's duration.

    The access log is let through whatever ``ACCESS_LOG`` says (the embedded
    profile keeps it to warnings).
    """
    formatter_config = dict(
        logging_settings(log_format="json", level="DEBUG")["formatters"]["structured"]
    )
    factory = formatter_config.pop("()")
    captured = CapturedLogs()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(factory(**formatter_config))
    root = logging.getLogger()
    access = logging.getLogger("emporium.access")
    previous_level, previous_access_level = root.level, access.level
    root.addHandler(handler)
    root.setLevel(level)
    access.setLevel(logging.NOTSET)
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        access.setLevel(previous_access_level)
