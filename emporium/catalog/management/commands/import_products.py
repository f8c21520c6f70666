"""``manage.py import_products FILE``: the API's import, from a local file, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from emporium.catalog import tasks
from emporium.catalog.imports import selectors, services
from emporium.catalog.imports.storage import stream_pieces, upload_store
from emporium.catalog.models import ProductImport
from emporium.core.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Imports products from a CSV or NDJSON file (docs/api.md, 'Bulk catalog import'). "
        "Applies it in this process with a progress bar, or queues it with --background."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=["csv", "ndjson"], default=None)
        parser.add_argument(
            "--encoding", default=None, help="utf-8, cp1252 or latin-1; guessed when left out."
        )
        parser.add_argument(
            "--background", action="store_true", help="Queue the import for the workers."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        content_type = f"; charset={options['encoding']}" if options["encoding"] else ""
        try:
            with path.open("rb") as source:
                upload = upload_store(
                    pieces=stream_pieces(source), file_name=path.name, content_type=content_type
                )
            item, created = services.import_create(
                upload=upload, user=None, file_format=options["format"]
            )
        except ApplicationError as error:
            raise CommandError(f"{error.message} {error.details}") from None
        if not created:
            self.stdout.write(f"This file was imported before: import {item.pk} ({item.status}).")
            self._report(item)
            return
        if options["background"]:
            tasks.product_import_enqueue(import_id=item.pk)
            self.stdout.write(f"Queued import {item.pk}.")
            return
        self._run(item, progress=not options["no_progress"])

    def _run(self, item: ProductImport, *, progress: bool) -> None:
        bar = tqdm(
            total=item.size_bytes,
            unit="B",
            unit_scale=True,
            desc=f"import {item.pk}",
            disable=not progress,
            file=self.stderr,
        )

        def on_chunk(current: ProductImport) -> None:
            bar.update(current.byte_offset - bar.n)
            bar.set_postfix(
                rows=current.rows_processed,
                failed=current.rows_failed,
                refresh=False,
            )

        try:
            services.import_run(import_id=item.pk, on_chunk=on_chunk)
        finally:
            bar.close()
        self._report(selectors.import_get(import_id=item.pk))

    def _report(self, item: ProductImport) -> None:
        figures = selectors.import_progress(item)
        self.stdout.write(
            "import {id} {status}: {rows_processed} rows, {rows_created} created, "
            "{rows_updated} updated, {rows_unchanged} unchanged, {rows_failed} failed, "
            "{categories_created} categories created".format(**figures)
        )
        if item.rows_failed:
            self.stdout.write(f"Rejected rows: GET /api/products/imports/{item.pk}/errors.csv")
