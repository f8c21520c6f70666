"""Reading an import file: its encoding, its CSV header, and records from any byte offset.

A chunk starts where the last one ended, so records are read line by line from
a binary file and the byte offset after each complete record is known: CSV
records may span lines (a quoted field with a newline), and ``csv.reader``
asks for exactly the lines a record needs. The encodings accepted are all
ASCII-compatible, so a newline byte is always a line end.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import charset_normalizer

from emporium.catalog.models import ProductImportFormat

# The sample the encoding is guessed from and the CSV header read from.
SAMPLE_BYTES = 64 * 1024
SUPPORTED_ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1")
_ENCODING_NAMES = {codecs.lookup(name).name: name for name in SUPPORTED_ENCODINGS}
# A field may hold a long description; csv's default limit is 128 KiB.
csv.field_size_limit(1024 * 1024)


class UnsupportedEncoding(ValueError):
    pass


def encoding_normalise(declared: str) -> str:
    """A declared charset as one of SUPPORTED_ENCODINGS; raises UnsupportedEncoding."""
    try:
        name = codecs.lookup(declared.strip()).name
    except LookupError:
        raise UnsupportedEncoding(declared) from None
    if name not in _ENCODING_NAMES:
        raise UnsupportedEncoding(declared)
    return _ENCODING_NAMES[name]


def encoding_detect(sample: bytes) -> str:
    """UTF-8 (with or without a byte order mark) when the sample is valid UTF-8,
    else cp1252 or Latin-1 as charset-normalizer judges the sample.

    UTF-16 and UTF-32 (recognised by their byte order marks) are refused: their
    newline is not one byte, and catalog tools export UTF-8 or a Windows code page.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnsupportedEncoding("utf-16")
    try:
        # Not final: the sample may end inside a character.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(sample, cp_isolation=["cp1252", "latin_1"]).best()
    if best is not None and best.encoding == "cp1252":
        return "cp1252"
    return "latin-1"  # decodes any byte: nothing is refused for its encoding alone


def sample_text(sample: bytes, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return str(decoder.decode(sample, final=False))


def csv_header(sample: bytes, encoding: str) -> list[str] | None:
    """The header row's column names, lowercased; None when the sample holds no whole line."""
    text = sample_text(sample, encoding)
    if "\n" not in text and len(sample) >= SAMPLE_BYTES:
        return None
    for record in csv.reader(io.StringIO(text)):
        return [name.strip().lower() for name in record]
    return []


@dataclass
class Record:
    """One record of the file: its number (a line, or a CSV record with the header as 1)
    and its fields by column name, or the reason it could not be read."""

    number: int
    fields: dict[str, Any] | None = None
    problem: str | None = None


@dataclass
class Batch:
    records: list[Record] = field(default_factory=list)
    offset: int = 0  # the byte offset just after the last record read
    records_read: int = 0  # records read from the start of the file, header included
    at_end: bool = False


class _LineSource:
    """Decoded lines of a binary file, counting the bytes they came from."""

    def __init__(self, file: BinaryIO, *, encoding: str, offset: int) -> None:
        self.file = file
        self.offset = offset
        self.encoding = "utf-8" if encoding == "utf-8-sig" else encoding
        self.strip_bom = encoding == "utf-8-sig" and offset == 0
        self.undecodable = False  # set when a line of the current record was not valid text

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self.file.readline()
        if not raw:
            raise StopIteration
        self.offset += len(raw)
        if self.strip_bom:
            self.strip_bom = False
            if raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError:
            self.undecodable = True
            return raw.decode(self.encoding, errors="replace")


def records_read(
    path: Path,
    *,
    file_format: str,
    encoding: str,
    columns: list[str],
    offset: int,
    records_before: int,
    limit: int,
) -> Batch:
    """Up to ``limit`` data records starting at byte ``offset``.

    ``records_before`` is how many records precede ``offset`` (the header
    included), so numbers continue across chunks. Blank lines are counted and
    skipped. At offset 0 a CSV file's header record is skipped.
    """
    batch = Batch(offset=offset, records_read=records_before)
    with path.open("rb") as file:
        file.seek(offset)
        source = _LineSource(file, encoding=encoding, offset=offset)
        if file_format == ProductImportFormat.CSV:
            _csv_records(source, columns=columns, batch=batch, limit=limit)
        else:
            _ndjson_records(source, batch=batch, limit=limit)
    return batch


def _undecodable(source: _LineSource) -> str:
    return f"not valid {source.encoding} text"


def _csv_records(source: _LineSource, *, columns: list[str], batch: Batch, limit: int) -> None:
    reader = csv.reader(source, strict=False)
    width = len(columns)
    while len(batch.records) < limit:
        source.undecodable = False
        try:
            values = next(reader)
        except StopIteration:
            batch.at_end = True
            break
        except csv.Error as error:
            batch.records_read += 1
            batch.offset = source.offset
            batch.records.append(Record(batch.records_read, problem=f"unreadable CSV: {error}"))
            continue
        batch.records_read += 1
        batch.offset = source.offset
        if batch.records_read == 1:
            continue  # the header, read when the file was stored
        if not values or values == [""]:
            continue
        number = batch.records_read
        if source.undecodable:
            batch.records.append(Record(number, problem=_undecodable(source)))
            continue
        if len(values) > width and not any(value.strip() for value in values[width:]):
            values = values[:width]
        if len(values) != width:
            problem = f"expected {width} fields as in the header, found {len(values)}"
            batch.records.append(Record(number, problem=problem))
            continue
        batch.records.append(Record(number, fields=dict(zip(columns, values, strict=True))))


def _ndjson_records(source: _LineSource, *, batch: Batch, limit: int) -> None:
    while len(batch.records) < limit:
        source.undecodable = False
        try:
            line = next(source)
        except StopIteration:
            batch.at_end = True
            break
        batch.records_read += 1
        batch.offset = source.offset
        number = batch.records_read
        if not line.strip():
            continue
        if source.undecodable:
            batch.records.append(Record(number, problem=_undecodable(source)))
            continue
        try:
            value = json.loads(line)
        except ValueError as error:
            batch.records.append(Record(number, problem=f"not valid JSON: {error}"))
            continue
        if not isinstance(value, dict):
            batch.records.append(Record(number, problem="not a JSON object"))
            continue
        batch.records.append(Record(number, fields={str(k).lower(): v for k, v in value.items()}))
