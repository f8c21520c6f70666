"""Reading imports: their progress and their rejected rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from emporium.catalog.models import ProductImport, ProductImportError
from emporium.core.errors import NotFound

ERROR_COLUMNS = ("row", "column", "message", "value")
_ERROR_PAGE = 5_000


def import_get(*, import_id: int) -> ProductImport:
    item = ProductImport.objects.filter(pk=import_id).first()
    if item is None:
        raise NotFound("No such import.")
    return item


def import_progress(item: ProductImport) -> dict[str, Any]:
    """What the API answers and the dashboard stream pushes about an import."""
    done = item.byte_offset if item.status != "completed" else item.size_bytes
    return {
        "id": item.pk,
        "status": item.status,
        "file_name": item.file_name,
        "format": item.file_format,
        "encoding": item.encoding,
        "content_sha256": item.content_sha256,
        "size_bytes": item.size_bytes,
        "bytes_processed": done,
        "percent": round(100 * done / item.size_bytes, 1) if item.size_bytes else 100.0,
        "chunks_done": item.chunks_done,
        "rows_processed": item.rows_processed,
        "rows_created": item.rows_created,
        "rows_updated": item.rows_updated,
        "rows_unchanged": item.rows_unchanged,
        "rows_failed": item.rows_failed,
        "categories_created": item.categories_created,
        "errors_stored": item.errors_stored,
        "last_row": item.records_read,
        "cancel_requested": item.cancel_requested,
        "failure": item.failure,
        "created_at": item.created_at.isoformat() if item.created_at else None,
        "started_at": item.started_at.isoformat() if item.started_at else None,
        "finished_at": item.finished_at.isoformat() if item.finished_at else None,
    }


def import_errors_csv(*, product_import: ProductImport) -> Iterator[str]:
    """The rejected rows as CSV text, a line at a time, read in keyset pages."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(ERROR_COLUMNS)
    yield flush()
    last_id = 0
    while True:
        page = list(
            ProductImportError.objects.filter(product_import=product_import, pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", "row_number", "column", "message", "value")[:_ERROR_PAGE]
        )
        if not page:
            return
        for pk, row_number, column, message, value in page:
            writer.writerow((row_number, column, message, _csv_safe(value)))
            last_id = pk
        yield flush()


def _csv_safe(value: str) -> str:
    """A value a spreadsheet will not run as a formula (CSV injection)."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
