"""Prints a new JWT_PRIVATE_KEYS entry: put it first, keep the old one for a grace period."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from config.settings.jwt_keys import jwt_key_entry


class Command(BaseCommand):
    help = "Prints a new Ed25519 JWT signing key as a JWT_PRIVATE_KEYS entry (<kid>:<seed>)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kid", default=None, help="Key id; default: today's date and time.")

    def handle(self, *args: Any, **options: Any) -> None:
        kid = options["kid"] or timezone.now().strftime("%Y%m%d-%H%M%S")
        self.stdout.write(jwt_key_entry(kid))
