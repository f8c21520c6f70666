from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from emporium.demo.banner import banner_text, server_wait


class Command(BaseCommand):
    help = "Waits until the server answers, then prints its URLs and the demo logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", required=True, help="the server's base URL")
        parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
        parser.add_argument(
            "--log-file", action="append", default=[], help="a simulator's log (repeatable)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base_url = options["url"].rstrip("/")
        if not server_wait(base_url, timeout=options["timeout"]):
            raise CommandError(f"{base_url} did not answer within {options['timeout']:.0f} s")
        self.stdout.write(banner_text(base_url, log_files=options["log_file"]))
