"""``manage.py dashboard_publisher``: the dashboard's once-a-second publisher as a process.

For deployments whose HTTP is served by WSGI processes (granian, gunicorn):
ASGI processes start the publisher themselves on their first request. Any
number may run; each second only one of them publishes (see ``publisher``).
It serves /metrics on ``METRICS_PORT`` (9104 unless set; 0 serves none).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand

from emporium.dashboard.publisher import publisher_run
from emporium.observability.metrics import metrics_serve_at_start

# The publisher's /metrics when METRICS_PORT is unset (the Prometheus job emporium-publisher).
METRICS_PORT = 9104


class Command(BaseCommand):
    help = "Publish the live dashboard's figures once a second until stopped."

    def handle(self, *args: Any, **options: Any) -> None:
        metrics_serve_at_start(default_port=METRICS_PORT, process="dashboard publisher")
        asyncio.run(self._run())

    async def _run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
        self.stdout.write("dashboard publisher: sending figures once a second")
        await publisher_run(stop=stop)
        self.stdout.write("dashboard publisher: stopped")
