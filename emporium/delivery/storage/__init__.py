"""Where telemetry is written: raw points, daily partitions, minute rollups, last positions.

- ``ingestion``: :func:`~.ingestion.telemetry_points_store`, the one entry point;
  it picks the path for the database and makes sure the batch's days have a
  partition.
- ``postgresql``: the batch stored with its rollups and position in one statement.
- ``sqlite``: the embedded profile's path, with the rollups computed in Python.
- ``partitions``: the daily partitions of the point table, made ahead and
  dropped past the retention.
- ``encoding``: PostgreSQL's binary array format, packed without a Python step
  per point.
- ``tables``: the table names and the minute rollup's SQL, rendered from
  ``rollups.MINUTE_FIELDS`` for both databases.
"""
