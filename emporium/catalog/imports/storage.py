"""Storing an uploaded import file: streamed to disk, hashed and measured as it arrives.

Nothing holds the whole file in memory: a request body is read (or a
multipart file part received) 64 KiB at a time and each piece is written,
hashed and counted at once; past ``CATALOG_IMPORT_MAX_BYTES`` the upload stops
with a 413 and the partial file is removed. The first ``SAMPLE_BYTES`` are
kept for the encoding and the CSV header. Files live in
``CATALOG_IMPORT_DIR``, which the web and worker processes must share.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler

from emporium.catalog.imports.formats import SAMPLE_BYTES
from emporium.core.errors import ApplicationError

READ_BYTES = 64 * 1024


class ImportTooLarge(ApplicationError):
    status_code = 413
    code = "import_too_large"
    default_message = "The file is larger than the import size limit."


def import_directory() -> Path:
    return Path(settings.CATALOG_IMPORT_DIR)


def import_max_bytes() -> int:
    return int(settings.CATALOG_IMPORT_MAX_BYTES)


def too_large() -> ImportTooLarge:
    return ImportTooLarge(details={"max_bytes": import_max_bytes()})


@dataclass
class StoredUpload:
    path: Path
    size: int
    sha256: str
    sample: bytes
    file_name: str
    content_type: str = ""

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class UploadSink:
    """A file being written under CATALOG_IMPORT_DIR, with its running hash and size."""

    def __init__(self, *, file_name: str = "", content_type: str = "") -> None:
        directory = import_directory()
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
        self._file = os.fdopen(descriptor, "wb")
        self.path = Path(name)
        self.size = 0
        self.limit = import_max_bytes()
        self._digest = hashlib.sha256()
        self._sample = bytearray()
        self.file_name = file_name
        self.content_type = content_type

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.discard()
            raise too_large()
        self._digest.update(data)
        if len(self._sample) < SAMPLE_BYTES:
            self._sample += data[: SAMPLE_BYTES - len(self._sample)]
        self._file.write(data)

    def finish(self) -> StoredUpload:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return StoredUpload(
            path=self.path,
            size=self.size,
            sha256=self._digest.hexdigest(),
            sample=bytes(self._sample),
            file_name=self.file_name,
            content_type=self.content_type,
        )

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


def upload_store(
    *, pieces: Iterable[bytes], file_name: str = "", content_type: str = ""
) -> StoredUpload:
    """Writes ``pieces`` (a request body or a local file, read a piece at a time) to disk."""
    sink = UploadSink(file_name=file_name, content_type=content_type)
    try:
        for piece in pieces:
            sink.write(piece)
    except BaseException:
        sink.discard()
        raise
    return sink.finish()


def stream_pieces(stream: Any, *, size: int = READ_BYTES) -> Iterable[bytes]:
    while piece := stream.read(size):
        yield piece


class ImportUploadHandler(FileUploadHandler):
    """Receives the multipart part named ``file`` straight into an :class:`UploadSink`.

    Every other file part is skipped; the handler keeps what it stored in
    ``stored`` for the view.
    """

    chunk_size = READ_BYTES
    FIELD = "file"

    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.sink: UploadSink | None = None
        self.stored: StoredUpload | None = None

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],
        content_length: int,
        boundary: str,
        encoding: str | None = None,
    ) -> None:
        if content_length > import_max_bytes():
            raise too_large()

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        if field_name == self.FIELD and self.sink is None and self.stored is None:
            self.sink = UploadSink(file_name=file_name or "", content_type=self.content_type or "")

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if self.sink is not None and self.field_name == self.FIELD:
            self.sink.write(raw_data)
            return None
        return None  # other parts are dropped, never buffered

    def file_complete(self, file_size: int) -> None:
        if self.sink is not None and self.field_name == self.FIELD and self.stored is None:
            self.stored = self.sink.finish()
            self.sink = None
        return None

    def upload_interrupted(self) -> None:
        if self.sink is not None:
            self.sink.discard()
            self.sink = None
