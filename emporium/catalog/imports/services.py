"""Creating, running and cancelling product imports.

An import is one file content (its SHA-256): a second upload of the same bytes
answers the import that exists unless that one was cancelled or failed.
Running it applies the file a chunk at a time (CATALOG_IMPORT_CHUNK_ROWS
records); each chunk is one transaction that takes the import's row lock,
reads on from the committed byte offset, writes the valid rows, records the
bad ones and moves the offset. So a run that dies loses at most its current
chunk, a second runner waits and then continues where the first stopped, and
a cancellation (a flag) is seen between two chunks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from emporium.accounts.models import User
from emporium.catalog import services as catalog_services
from emporium.catalog.imports import formats, validation
from emporium.catalog.imports.chunks import ChunkStart, ReadAhead, chunk_after, chunk_prepare
from emporium.catalog.imports.selectors import import_progress
from emporium.catalog.imports.storage import StoredUpload, import_directory
from emporium.catalog.imports.upsert import Written, products_upsert_encoded
from emporium.catalog.models import (
    PRODUCT_IMPORT_LIVE_STATUSES,
    Category,
    ProductImport,
    ProductImportError,
    ProductImportFormat,
    ProductImportStatus,
)
from emporium.core.errors import Conflict, InvalidInput
from emporium.realtime import groups
from emporium.realtime.services import publish_after_commit

logger = logging.getLogger(__name__)

FORMAT_OF_EXTENSION = {
    ".csv": ProductImportFormat.CSV,
    ".ndjson": ProductImportFormat.NDJSON,
    ".jsonl": ProductImportFormat.NDJSON,
}
FORMAT_OF_CONTENT_TYPE = {
    "text/csv": ProductImportFormat.CSV,
    "application/csv": ProductImportFormat.CSV,
    "application/x-ndjson": ProductImportFormat.NDJSON,
    "application/ndjson": ProductImportFormat.NDJSON,
    "application/jsonl": ProductImportFormat.NDJSON,
}
FINISHED = (
    ProductImportStatus.COMPLETED,
    ProductImportStatus.CANCELLED,
    ProductImportStatus.FAILED,
)


class ImportFileInvalid(InvalidInput):
    code = "import_file_invalid"
    default_message = "The file cannot be imported."


class ImportFinished(Conflict):
    code = "import_finished"
    default_message = "The import has already finished."


def import_format_choose(
    *, requested: str | None, content_type: str, file_name: str
) -> ProductImportFormat:
    """The format named by the client, else by the content type, else by the file's extension."""
    if requested:
        try:
            return ProductImportFormat(requested.lower())
        except ValueError:
            raise ImportFileInvalid(
                details={"format": [f"Choose one of: {', '.join(ProductImportFormat.values)}."]}
            ) from None
    by_type = FORMAT_OF_CONTENT_TYPE.get(content_type.split(";")[0].strip().lower())
    if by_type:
        return by_type
    by_extension = FORMAT_OF_EXTENSION.get(Path(file_name).suffix.lower())
    if by_extension:
        return by_extension
    raise ImportFileInvalid(
        "Say whether the file is CSV or NDJSON.",
        details={"format": ["Send text/csv or application/x-ndjson, or name a .csv/.ndjson file."]},
    )


def _charset_of(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return None


def _encoding_choose(upload: StoredUpload, declared: str | None) -> str:
    try:
        if declared:
            return formats.encoding_normalise(declared)
        return formats.encoding_detect(upload.sample)
    except formats.UnsupportedEncoding as error:
        raise ImportFileInvalid(
            details={
                "encoding": [
                    f"{error} is not supported; send {', '.join(formats.SUPPORTED_ENCODINGS)} text."
                ]
            }
        ) from None


def _columns_of(upload: StoredUpload, encoding: str) -> list[str]:
    header = formats.csv_header(upload.sample, encoding)
    if header is None:
        raise ImportFileInvalid(details={"header": ["The header line is too long."]})
    columns = validation.columns_normalise(header)
    missing = validation.columns_missing(columns)
    if missing:
        raise ImportFileInvalid(
            "The CSV header lacks required columns.",
            details={"columns": [f"Missing: {', '.join(missing)}."], "found": header},
        )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise ImportFileInvalid(details={"columns": [f"Repeated: {', '.join(repeated)}."]})
    return columns


def import_create(
    *,
    upload: StoredUpload,
    user: User | None,
    file_format: str | None = None,
) -> tuple[ProductImport, bool]:
    """The import for this file's content, and whether it was created now.

    The same content as a queued, running or completed import answers that
    import and the new copy is discarded. Bad files (empty, unknown format or
    encoding, a CSV header without the required columns) raise
    ImportFileInvalid and leave nothing behind.
    """
    try:
        if upload.size == 0:
            raise ImportFileInvalid(details={"file": ["The file is empty."]})
        chosen = import_format_choose(
            requested=file_format, content_type=upload.content_type, file_name=upload.file_name
        )
        encoding = _encoding_choose(upload, _charset_of(upload.content_type))
        columns = _columns_of(upload, encoding) if chosen == ProductImportFormat.CSV else []
        existing = _live_import_of(upload.sha256)
        if existing is not None:
            upload.discard()
            return existing, False
        stored_name = f"{upload.sha256[:16]}-{uuid.uuid4().hex}.{chosen}"
        upload.path.rename(import_directory() / stored_name)
        upload.path = import_directory() / stored_name
        try:
            with transaction.atomic():
                item = ProductImport.objects.create(
                    created_by=user,
                    file_name=upload.file_name[:255],
                    file_format=chosen,
                    encoding=encoding,
                    content_sha256=upload.sha256,
                    size_bytes=upload.size,
                    stored_name=stored_name,
                    columns=columns,
                )
                _progress_publish(item)
        except IntegrityError:
            # The same file arrived twice at once: the other upload's import stands.
            existing = _live_import_of(upload.sha256)
            if existing is None:
                raise
            upload.discard()
            return existing, False
    except BaseException:
        upload.discard()
        raise
    return item, True


def _live_import_of(sha256: str) -> ProductImport | None:
    return (
        ProductImport.objects.filter(content_sha256=sha256, status__in=PRODUCT_IMPORT_LIVE_STATUSES)
        .order_by("-id")
        .first()
    )


def import_cancel(*, product_import: ProductImport) -> ProductImport:
    """Asks the import to stop; a queued one stops at once, a running one after its chunk."""
    with transaction.atomic():
        item = ProductImport.objects.select_for_update().get(pk=product_import.pk)
        if item.status in FINISHED:
            raise ImportFinished(details={"status": item.status})
        item.cancel_requested = True
        fields = ["cancel_requested", "updated_at"]
        if item.status == ProductImportStatus.QUEUED:
            item.status = ProductImportStatus.CANCELLED
            item.finished_at = timezone.now()
            fields += ["status", "finished_at"]
            _stored_file_remove_after_commit(item)
        item.save(update_fields=fields)
        _progress_publish(item)
    return item


def imports_stalled(*, quiet_seconds: float) -> list[int]:
    """Unfinished imports that have not moved for ``quiet_seconds``: their task was lost
    (a publish that failed after commit) or its worker died with no redelivery left."""
    since = timezone.now() - timedelta(seconds=quiet_seconds)
    return list(
        ProductImport.objects.filter(
            status__in=(ProductImportStatus.QUEUED, ProductImportStatus.RUNNING),
            updated_at__lt=since,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _stored_file_remove_after_commit(item: ProductImport) -> None:
    """A finished import's file is no longer needed: its rows are applied or never will be.

    (Duplicate uploads are recognised by the hash kept on the row, not by the file.)
    """
    path = import_directory() / item.stored_name
    transaction.on_commit(lambda: path.unlink(missing_ok=True))


def uploads_abandoned_remove(*, older_than_seconds: float) -> int:
    """Deletes partial uploads left by requests that died mid-body; returns how many."""
    directory = import_directory()
    if not directory.is_dir():
        return 0
    cutoff = time.time() - older_than_seconds
    removed = 0
    for path in directory.glob("upload-*.part"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _progress_publish(item: ProductImport) -> None:
    publish_after_commit(
        groups.DASHBOARD, {"type": "catalog.import", "import": import_progress(item)}
    )


# -- running --------------------------------------------------------------------------


# Tables whose rows the search app's triggers update for the products written: the
# vocabulary's word counts, one new row version per distinct word a chunk changes.
# With autovacuum off (or a minute apart) nothing else removes the dead versions over
# a long import, and the triggers' look-ups would read through them; a VACUUM of that
# small table every 20 chunks, between their transactions, costs milliseconds
# (docs/performance_tuning.md, "Bulk catalog import").
CHURNED_TABLES = ("search_vocabulary",)
VACUUM_EVERY_CHUNKS = 20


def churned_tables_vacuum() -> None:
    """VACUUMs the tables the import churns; outside any transaction, PostgreSQL only."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return
    with connection.cursor() as cursor:
        for table in CHURNED_TABLES:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [table])
            if cursor.fetchone()[0]:
                # The name is one of the constants above, never input.
                cursor.execute(f"VACUUM (SKIP_LOCKED) {table}")


def import_run(
    *,
    import_id: int,
    time_budget_seconds: float | None = None,
    on_chunk: Callable[[ProductImport], None] | None = None,
) -> bool:
    """Applies chunks until the import finishes or the budget is spent; True if work is left.

    Idempotent: every chunk starts from the offset the last one committed. The
    next chunk is read and validated on a thread while this one is written
    (:mod:`emporium.catalog.imports.chunks`).
    """
    started = time.monotonic()
    with ReadAhead() as read_ahead:
        while True:
            item, more = import_chunk_apply(import_id=import_id, read_ahead=read_ahead)
            if on_chunk is not None:
                on_chunk(item)
            if item.chunks_done % VACUUM_EVERY_CHUNKS == 0:
                churned_tables_vacuum()
            if not more:
                return False
            if (
                time_budget_seconds is not None
                and time.monotonic() - started >= time_budget_seconds
            ):
                return True


def import_chunk_apply(
    *, import_id: int, read_ahead: ReadAhead | None = None
) -> tuple[ProductImport, bool]:
    """Applies the next chunk in one transaction; returns the import and whether more is left.

    With ``read_ahead``, the chunk it prepared is used if it starts where this
    import stands, and the chunk after this one is started on it.
    """
    try:
        with transaction.atomic():
            item = ProductImport.objects.select_for_update().get(pk=import_id)
            if item.status in FINISHED:
                return item, False
            if item.cancel_requested:
                item.status = ProductImportStatus.CANCELLED
                item.finished_at = timezone.now()
                item.save(update_fields=["status", "finished_at", "updated_at"])
                _stored_file_remove_after_commit(item)
                _progress_publish(item)
                return item, False
            _chunk_apply(item, read_ahead)
            _progress_publish(item)
            return item, item.status not in FINISHED
    except (OSError, UnicodeError) as error:
        # The stored file is gone or unreadable: retrying cannot help.
        logger.exception("import %s failed", import_id)
        return _import_fail(import_id, f"{type(error).__name__}: {error}"), False


def _import_fail(import_id: int, failure: str) -> ProductImport:
    with transaction.atomic():
        item = ProductImport.objects.select_for_update().get(pk=import_id)
        item.status = ProductImportStatus.FAILED
        item.failure = failure[:2000]
        item.finished_at = timezone.now()
        item.save(update_fields=["status", "failure", "finished_at", "updated_at"])
        _stored_file_remove_after_commit(item)
        _progress_publish(item)
    return item


def _chunk_apply(item: ProductImport, read_ahead: ReadAhead | None) -> None:
    now = timezone.now()
    if item.status == ProductImportStatus.QUEUED:
        item.status = ProductImportStatus.RUNNING
        item.started_at = now
    start = ChunkStart(
        path=import_directory() / item.stored_name,
        file_format=item.file_format,
        encoding=item.encoding,
        columns=tuple(item.columns),
        offset=item.byte_offset,
        records_before=item.records_read,
        limit=int(settings.CATALOG_IMPORT_CHUNK_ROWS),
    )
    chunk = read_ahead.take(start) if read_ahead is not None else None
    if chunk is None:
        chunk = chunk_prepare(start)
    batch, errors, encoded = chunk.batch, chunk.errors, chunk.encoded
    category_ids, created_categories = _categories_resolve(set(encoded.categories))
    # Started only now: the thread holds the interpreter's lock most of the time, and
    # this thread, between its short statements, would wait for it at each result;
    # during the upsert it only waits for the database.
    if read_ahead is not None and not batch.at_end:
        read_ahead.start(chunk_after(chunk))
    written = products_upsert_encoded(
        chunk=encoded,
        category_ids=[category_ids[path] for path in encoded.categories],
        now=now,
    )
    created = sum(1 for row in written if row.created)
    _errors_store(item, errors)
    _cache_invalidate(written)

    item.byte_offset = batch.offset
    item.records_read = batch.records_read
    item.chunks_done += 1
    item.rows_processed += len(batch.records)
    item.rows_created += created
    item.rows_updated += len(written) - created
    item.rows_unchanged += encoded.rows - len(written)
    item.rows_failed += chunk.failed_rows
    item.categories_created += created_categories
    if batch.at_end:
        item.status = ProductImportStatus.COMPLETED
        item.finished_at = now
        _stored_file_remove_after_commit(item)
    item.save()


def _errors_store(item: ProductImport, errors: list[validation.RowError]) -> None:
    room = max(0, int(settings.CATALOG_IMPORT_MAX_STORED_ERRORS) - item.errors_stored)
    kept = errors[:room]
    ProductImportError.objects.bulk_create(
        ProductImportError(
            product_import=item,
            row_number=error.row_number,
            column=error.column[:64],
            message=error.message[:255],
            value=error.value[:200],
        )
        for error in kept
    )
    item.errors_stored += len(kept)


def _cache_invalidate(written: list[Written]) -> None:
    """Bumps the product lists and name words, and each updated product's own entries.

    A created product has no entries of its own to bump (a 404 is never cached),
    so a chunk of new products costs two bumps, not one per product. Past the
    exact-bump bound of updated products the whole catalog is bumped instead.
    """
    if not written:
        return
    updated = [row.product_id for row in written if not row.created]
    if len(updated) > catalog_services.EXACT_PRODUCT_BUMPS_MAX:
        catalog_services.catalog_cache_invalidate()
    else:
        catalog_services.product_cache_invalidate(product_ids=updated)


def _categories_resolve(
    paths: set[tuple[str, ...]],
) -> tuple[dict[tuple[str, ...], int], int]:
    """Each path's category id, creating the levels that do not exist; and how many were made.

    One query finds every category named in the chunk; the tree is walked in
    memory. Missing levels are made by the catalog's own category_create
    (materialised path, depth limit, cache bump), parents first.
    """
    names = {name for path in paths for name in path}
    children: dict[tuple[int | None, str], int] = {
        (parent_id, name): pk
        for pk, parent_id, name in Category.objects.filter(name__in=names).values_list(
            "pk", "parent_id", "name"
        )
    }
    resolved: dict[tuple[str, ...], int] = {}
    created = 0
    for path in sorted(paths):
        parent_id: int | None = None
        for name in path:
            found = children.get((parent_id, name))
            if found is None:
                found = _category_make(name=name, parent_id=parent_id)
                children[(parent_id, name)] = found
                created += 1
            parent_id = found
        assert parent_id is not None  # noqa: S101 - a path has at least one level
        resolved[path] = parent_id
    return resolved, created


def _category_make(*, name: str, parent_id: int | None) -> int:
    parent = Category(pk=parent_id) if parent_id is not None else None
    try:
        return catalog_services.category_create(name=name, parent=parent).pk
    except catalog_services.CategoryNameTaken:
        # Another import (or a person) made it since this chunk looked.
        return Category.objects.get(parent_id=parent_id, name=name).pk


def import_progress_of(item: ProductImport) -> dict[str, Any]:
    return import_progress(item)
