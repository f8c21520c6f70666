from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from emporium.integrations.relay import outbox_relay_forever, outbox_relay_pending


class Command(BaseCommand):
    help = "Publishes outbox events to the broker (continuously, or once with --once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="drain the outbox and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            self.stdout.write(f"published {outbox_relay_pending()} events")
            return
        outbox_relay_forever()
