"""Sends the dashboard's figures to every connected dashboard once a second.

Where it runs (docs/dashboard.md, ADR 0015): on a thread of every ASGI server
process that serves HTTP, started by ``RequestTimingMiddleware`` on the first
request it times (that is ``make run``), and as ``manage.py
dashboard_publisher`` where HTTP is served by WSGI processes (production).
Each second every running publisher tries to claim that second with
``cache.add``; one wins (Redis makes it one in the whole
deployment), computes the figures (one indexed query and one Redis round trip)
and sends one ``metrics`` event to the ``dashboard`` group.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.cache import caches
from django.db import close_old_connections

from emporium.dashboard.selectors import Metrics, metrics_read
from emporium.observability import domain_metrics

logger = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"
# After every process's flusher has written the second that just ended.
PUBLISH_OFFSET_SECONDS = 0.3
CLAIM_CACHE_ALIAS = "default"
CLAIM_TTL_SECONDS = 10
_FAILURE_LOG_INTERVAL_SECONDS = 60.0
_thread_lock = threading.Lock()


def publish_claim(*, second: int) -> bool:
    """True for exactly one caller per second across every process sharing the cache."""
    return bool(
        caches[CLAIM_CACHE_ALIAS].add(
            f"dashboard:published:{second}", os.getpid(), timeout=CLAIM_TTL_SECONDS
        )
    )


def _metrics_for(second: int) -> Metrics | None:
    try:
        if not publish_claim(second=second):
            return None
        return metrics_read(second=second)
    finally:
        close_old_connections()


def _channel_layer() -> Any:
    from channels.layers import get_channel_layer

    return get_channel_layer()


async def metrics_send(*, metrics: Metrics, layer: Any | None = None) -> None:
    layer = layer or _channel_layer()
    await layer.group_send(
        DASHBOARD_GROUP, {"type": "dashboard.event", "event": metrics.as_event()}
    )


_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None


def database_executor() -> ThreadPoolExecutor:
    """The one thread (so one connection) that does this process's database and cache work.

    Made again in a forked child, where the parent's worker thread does not exist.
    """
    global _executor, _executor_pid
    with _thread_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-figures")
            _executor_pid = os.getpid()
        return _executor


async def publish_second(*, second: int, layer: Any | None = None) -> Metrics | None:
    """Claims ``second`` and, if this caller won it, sends the figures; returns them."""
    loop = asyncio.get_running_loop()
    metrics = await loop.run_in_executor(database_executor(), _metrics_for, second)
    if metrics is not None:
        await metrics_send(metrics=metrics, layer=layer)
        domain_metrics.DASHBOARD_PUBLISHES.inc()
    return metrics


async def publisher_run(*, stop: asyncio.Event | None = None) -> None:
    """Publishes at ``PUBLISH_OFFSET_SECONDS`` past every second until ``stop`` is set."""
    stop = stop or asyncio.Event()
    last_failure_logged = 0.0
    while not stop.is_set():
        now = time.time()
        delay = math.floor(now) + 1 + PUBLISH_OFFSET_SECONDS - now
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return
        except TimeoutError:
            pass
        try:
            await publish_second(second=int(time.time()))
        except Exception:  # a failed second must not stop the next ones
            if time.monotonic() - last_failure_logged > _FAILURE_LOG_INTERVAL_SECONDS:
                last_failure_logged = time.monotonic()
                logger.warning("dashboard figures could not be published", exc_info=True)


_thread_pid: int | None = None


def publisher_thread_ensure() -> None:
    """Runs the publisher on a daemon thread of this process, once (again after a fork).

    The thread has its own event loop: the channel layer accepts sends from
    any thread and loop, so the server's loop is never borrowed.
    """
    global _thread_pid
    pid = os.getpid()
    if _thread_pid == pid:
        return
    with _thread_lock:
        if _thread_pid == pid:
            return
        threading.Thread(
            target=asyncio.run, args=(publisher_run(),), name="dashboard-publisher", daemon=True
        ).start()
        _thread_pid = pid
