"""What other apps may hear from telemetry ingestion, without delivery importing them.

The dashboard counts stored points per second; it sits above delivery, so it
registers a listener here from its ``AppConfig.ready()`` and the ingestion
service announces each stored batch. Listeners run in the request and must
not do I/O (the dashboard's only adds to an in-memory counter).
"""

from __future__ import annotations

from collections.abc import Callable

PointsStoredListener = Callable[[int], None]
_points_stored: list[PointsStoredListener] = []


def points_stored_listen(listener: PointsStoredListener) -> None:
    """Registers ``listener(count)``; registering the same one twice keeps one."""
    if listener not in _points_stored:
        _points_stored.append(listener)


def points_stored_announce(*, count: int) -> None:
    for listener in tuple(_points_stored):
        listener(count)
