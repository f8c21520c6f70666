"""Seals every sealed column again under the active key (the first of ENCRYPTION_KEYS).

Run it after putting a new key first in ENCRYPTION_KEYS and restarting every
process; remove the old key from the list once this reports nothing left.
Online and resumable: see ``emporium.core.encryption.sealed_column_rotate``.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from emporium.core.encryption import (
    keyring,
    sealed_column_remaining,
    sealed_column_rotate,
    sealed_columns,
)


class Command(BaseCommand):
    help = "Re-encrypts, in batches and online, every sealed value not under the active key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument(
            "--max-passes",
            type=int,
            default=20,
            help="Passes over a column while rows are left (written meanwhile or locked).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Only count the values not under the active key; exit 1 if there are any.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = int(options["batch_size"])
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        active = keyring().active_id
        left_behind: list[str] = []
        for model, sealed_field in sealed_columns():
            label = f"{model._meta.label}.{sealed_field.name}"
            if options["check"]:
                remaining = sealed_column_remaining(model=model, sealed_field=sealed_field)
                self.stdout.write(f"{label}: {remaining} not under key {active}")
                if remaining:
                    left_behind.append(label)
                continue
            rotated = 0
            unreadable: list[int] = []
            for attempt in range(int(options["max_passes"])):
                result = sealed_column_rotate(
                    model=model, sealed_field=sealed_field, batch_size=batch_size
                )
                rotated += result.rotated
                unreadable = result.unreadable
                remaining = sealed_column_remaining(model=model, sealed_field=sealed_field)
                if remaining <= len(unreadable):
                    break
                time.sleep(min(0.05 * (attempt + 1), 1.0))  # let the writers holding rows finish
            self.stdout.write(
                f"{label}: {rotated} re-encrypted under key {active}, {remaining} left"
                + (f" (ids that do not open: {unreadable[:20]})" if unreadable else "")
            )
            if remaining:
                left_behind.append(label)
        if left_behind:
            raise CommandError(
                "Values not under the active key remain in: " + ", ".join(left_behind)
            )
