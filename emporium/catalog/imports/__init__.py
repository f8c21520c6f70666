"""Bulk catalog import: CSV or NDJSON files of products, applied in chunks.

* :mod:`.storage` streams an upload to disk with its size limit, content hash
  and a bounded sample for :mod:`.formats` to detect the encoding;
* :mod:`.formats` reads records from any byte offset of the stored file;
* :mod:`.validation` holds the rules a row must meet (one definition);
* :mod:`.upsert` writes a chunk of valid rows by SKU in one statement per
  engine, rewriting only the rows that differ;
* :mod:`.services` ties them together: an import per file content, chunks as
  transactions, categories made from their paths, cache bumps for what changed,
  progress on the dashboard stream, cancellation between chunks.

docs/api.md ("Bulk catalog import") describes the formats and the endpoints.
"""
