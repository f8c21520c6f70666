from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from emporium.integrations.backlog import BacklogSampler
from emporium.integrations.relay import outbox_relay_forever, outbox_relay_pending
from emporium.observability.metrics import metrics_serve_at_start

# The relay's /metrics when METRICS_PORT is unset (the Prometheus job emporium-relay).
METRICS_PORT = 9103


class Command(BaseCommand):
    help = (
        "Publishes outbox events to the broker (continuously, or once with --once). "
        "Running, it serves /metrics with the outbox backlog and the queues' depths."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="drain the outbox and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            self.stdout.write(f"published {outbox_relay_pending()} events")
            return
        if metrics_serve_at_start(default_port=METRICS_PORT, process="outbox relay"):
            BacklogSampler(broker_url=settings.EMPORIUM_EVENTS_BROKER_URL).start()
        outbox_relay_forever()
