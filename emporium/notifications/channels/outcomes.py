"""What an adapter reports for each delivery it was handed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OutcomeResult(StrEnum):
    SENT = "sent"
    # Worth another attempt later: a 4xx SMTP reply, a lost connection, a 503 or 429.
    TRANSIENT = "transient"
    # Never worth retrying: a 5xx SMTP reply, a malformed push message.
    PERMANENT = "permanent"
    # Nothing to send to (no address, no device left).
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    result: OutcomeResult
    error: str = ""
    # Seconds the provider asked to wait (Retry-After), if it said.
    retry_after: float | None = None
    # Push: device token ids that accepted the message, and those the provider
    # reported unregistered (their rows are removed).
    sent_to: tuple[int, ...] = ()
    dead_tokens: tuple[int, ...] = ()
