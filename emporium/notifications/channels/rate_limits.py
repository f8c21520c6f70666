"""Per-channel send rate limits, shared by every worker, on the project's one GCRA.

Each channel has a rate (messages a second) that matches what its provider
allows. A batch takes its messages from the limit in chunks no larger than one
second's worth (the burst GCRA allows), waiting as long as the limit says.
"""

from __future__ import annotations

import time

from emporium.core.throttling import gcra_take
from emporium.notifications.channels.models import channel_config

_PERIOD_SECONDS = 1.0


def rate_per_second(channel: str) -> int:
    return int(channel_config(channel)["RATE_PER_SECOND"])


def chunk_size(channel: str) -> int:
    """The most messages one take may ask for: one period's worth (the GCRA burst)."""
    rate = rate_per_second(channel)
    batch = int(channel_config(channel)["BATCH_SIZE"])
    return batch if rate <= 0 else max(1, min(rate, batch))


def acquire(*, channel: str, count: int) -> float:
    """Blocks until ``count`` messages may go out on ``channel``; returns the seconds waited.

    ``count`` must not exceed :func:`chunk_size`. A rate of 0 means unlimited.
    """
    rate = rate_per_second(channel)
    if rate <= 0 or count <= 0:
        return 0.0
    waited = 0.0
    key = f"notification_channels:rate:{channel}"
    while True:
        wait = gcra_take(key, limit=rate, period=_PERIOD_SECONDS, now=time.time(), cost=count)
        if wait <= 0:
            return waited
        time.sleep(wait)
        waited += wait
