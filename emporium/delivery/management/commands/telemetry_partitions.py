from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from emporium.delivery.storage.partitions import (
    telemetry_partitions_list,
    telemetry_partitions_maintain,
)


class Command(BaseCommand):
    help = (
        "Creates telemetry partitions for today and the next days and drops those older "
        "than EMPORIUM_TELEMETRY_RETENTION_DAYS (PostgreSQL); on SQLite deletes old points."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--list", action="store_true", help="only list the existing daily partitions"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            for day in telemetry_partitions_list():
                self.stdout.write(day.isoformat())
            return
        report = telemetry_partitions_maintain()
        created = ", ".join(day.isoformat() for day in report.created) or "none"
        dropped = ", ".join(day.isoformat() for day in report.dropped) or "none"
        self.stdout.write(f"created: {created}")
        self.stdout.write(f"dropped: {dropped}")
        self.stdout.write(f"minute rollups deleted: {report.minutes_deleted}")
