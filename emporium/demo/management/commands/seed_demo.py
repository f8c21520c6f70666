from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from emporium.demo.seeding import CUSTOMER_PASSWORD, EMBEDDED_ROLE_PASSWORD, seed_demo


class Command(BaseCommand):
    help = "Loads a deterministic demo catalog, users, reviews and wishlists (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--products", type=int, default=2_000, help="products to create")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["products"]
        if count < 0:
            self.stderr.write("--products must not be negative")
            raise SystemExit(2)
        with tqdm(
            total=count, unit="products", disable=options["no_progress"], mininterval=0.5
        ) as bar:
            report = seed_demo(product_count=count, progress=bar.update)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {report.products} products in {report.categories} categories, "
                f"{report.users} users, {report.reviews} reviews, "
                f"{report.wishlist_items} wishlist items."
            )
        )
        if report.staff_password is not None:
            self.stdout.write(
                f"Staff login ({settings.EMPORIUM_PROFILE} profile): "
                f"{report.staff_username} / {report.staff_password}"
            )
        if settings.EMPORIUM_PROFILE == "embedded":
            self.stdout.write(f"Demo customers: customer01..customer20 / {CUSTOMER_PASSWORD}")
        else:
            self.stdout.write(
                "Demo customers: customer01..customer20, with no usable password "
                "(set one with manage.py changepassword)"
            )
        if report.role_usernames:
            self.stdout.write(
                f"Role logins ({settings.EMPORIUM_PROFILE} profile): "
                f"{', '.join(report.role_usernames)} / {EMBEDDED_ROLE_PASSWORD}"
            )
