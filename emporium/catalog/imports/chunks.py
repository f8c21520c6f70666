"""A chunk read, validated and encoded, and the read-ahead that prepares the next one.

Reading, validating and encoding a chunk is Python work that needs no database; writing
it is database work during which the Python process only waits. So while one
chunk's statement runs, :class:`ReadAhead` prepares the next chunk on a thread
of its own (two cores: the import then takes about the longer of
the two instead of their sum).

What was read ahead is only a proposal. The chunk's transaction, holding the
import's row lock, takes it only when it starts at the byte offset and record
count that transaction found committed (:meth:`ReadAhead.take`); otherwise
(another runner moved the import on, or the read-ahead was for another file)
it is dropped and the chunk is read again from the committed offset. The
offset still moves only on commit, so a row is applied once whatever was read
ahead, and a cancellation (read under the lock at the start of a chunk) only
discards a prepared chunk that was never written. An error raised on the
thread is raised again by ``take``, inside the chunk's transaction, as if
the chunk had been read there.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from emporium.catalog.imports import formats, validation
from emporium.catalog.imports.upsert import EncodedChunk, chunk_encode


@dataclass(frozen=True)
class ChunkStart:
    """Where a chunk begins in which file, and how many records it may hold."""

    path: Path
    file_format: str
    encoding: str
    columns: tuple[str, ...]
    offset: int
    records_before: int
    limit: int


@dataclass
class PreparedChunk:
    """A chunk's records read and validated: its valid rows (the last row of a SKU wins)
    encoded for the upsert with their category paths, and its bad rows' errors."""

    start: ChunkStart
    batch: formats.Batch
    encoded: EncodedChunk[tuple[str, ...]]
    errors: list[validation.RowError]
    failed_rows: int


def chunk_prepare(start: ChunkStart) -> PreparedChunk:
    """Reads up to ``start.limit`` records from ``start.offset``, validates and encodes them."""
    batch = formats.records_read(
        start.path,
        file_format=start.file_format,
        encoding=start.encoding,
        columns=list(start.columns),
        offset=start.offset,
        records_before=start.records_before,
        limit=start.limit,
    )
    valid: dict[str, validation.ProductRow] = {}
    errors: list[validation.RowError] = []
    failed_rows = 0
    for record in batch.records:
        if record.fields is None:
            errors.append(validation.RowError(record.number, "", record.problem or "unreadable"))
            failed_rows += 1
            continue
        outcome = validation.row_validate(record.number, record.fields)
        if isinstance(outcome, list):
            errors += outcome
            failed_rows += 1
        else:
            valid.pop(outcome.sku, None)
            valid[outcome.sku] = outcome
    return PreparedChunk(
        start=start,
        batch=batch,
        encoded=chunk_encode(valid.values(), category_of=lambda row: row.category_path),
        errors=errors,
        failed_rows=failed_rows,
    )


def chunk_after(chunk: PreparedChunk) -> ChunkStart:
    """Where the chunk after this one begins."""
    return ChunkStart(
        path=chunk.start.path,
        file_format=chunk.start.file_format,
        encoding=chunk.start.encoding,
        columns=chunk.start.columns,
        offset=chunk.batch.offset,
        records_before=chunk.batch.records_read,
        limit=chunk.start.limit,
    )


class ReadAhead:
    """At most one chunk being prepared on one thread; use as a context manager."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-read-ahead")
        self._pending: tuple[ChunkStart, Future[PreparedChunk]] | None = None

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, start: ChunkStart) -> None:
        """Begins preparing the chunk at ``start``, dropping any other one under way."""
        self._drop()
        self._pending = (start, self._executor.submit(chunk_prepare, start))

    def take(self, start: ChunkStart) -> PreparedChunk | None:
        """The chunk prepared for exactly ``start`` (waiting for it), or None.

        Raises what preparing it raised.
        """
        if self._pending is None:
            return None
        expected, future = self._pending
        self._pending = None
        if expected != start:
            future.cancel()
            return None
        return future.result()

    def close(self) -> None:
        self._drop()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _drop(self) -> None:
        if self._pending is not None:
            self._pending[1].cancel()
            self._pending = None
