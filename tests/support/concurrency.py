"""Running work on real threads, released together, each on its own DB connection.

For tests marked ``django_db(transaction=True)`` on PostgreSQL: every thread
gets its own database connection (Django keeps one per thread), so the
requests really race inside the database. Each thread closes its connection
when done, so a test never leaves connections open on the shared server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import connections

Item = TypeVar("Item")
Result = TypeVar("Result")


def run_concurrently(
    work: Callable[[Item], Result], items: Sequence[Item], *, workers: int
) -> list[Result]:
    """Runs ``work(item)`` for every item on ``workers`` threads; results in item order.

    The threads wait at a barrier and start together; each then works through
    its share of the items (item ``i`` goes to thread ``i % workers``).
    """
    workers = min(workers, len(items))
    barrier = threading.Barrier(workers)

    def run_share(share: int) -> list[tuple[int, Result]]:
        try:
            barrier.wait(timeout=60)
            return [(index, work(items[index])) for index in range(share, len(items), workers)]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        shares = list(pool.map(run_share, range(workers)))
    ordered = sorted((pair for share in shares for pair in share), key=lambda pair: pair[0])
    return [result for _, result in ordered]
