"""What other apps may hear from telemetry ingestion, without delivery importing them.

The dashboard counts stored points per second; it sits above delivery, so it
registers a listener here from its ``AppConfig.ready()`` and the ingestion
service announces each stored batch. Listeners run in the request and must
not do I/O (the dashboard's only adds to an in-memory counter).
"""

from __future__ import annotations

from collections.abc import Callable

from emporium.core.announcements import Announcement

PointsStoredListener = Callable[[int], None]
_points_stored: Announcement[int] = Announcement()


def points_stored_listen(listener: PointsStoredListener) -> None:
    """Registers ``listener(count)``; registering the same one twice keeps one."""
    _points_stored.listen(listener)


def points_stored_announce(*, count: int) -> None:
    _points_stored.announce(count)
