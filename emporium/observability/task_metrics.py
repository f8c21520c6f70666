"""Celery's metrics: each task run's outcome and time, beat's sends, and /metrics for both.

:func:`task_metrics_connect` connects the receivers once per process, from
``ObservabilityConfig.ready``: worker and beat set up Django before they send
``worker_init`` and ``beat_init``. Each outcome is counted once, from the
signal Celery sends for it: ``task_failure`` and ``task_retry`` (sent by the
pool process that ran the task, or by the worker's main process when that
process died or overran its hard time limit), and a ``task_postrun`` whose
state is SUCCESS. ``task_prerun`` and ``task_postrun`` time the run where it
ran (a pool process, or the caller's process for a task run eagerly in the
embedded profile). A task whose process died and that goes back to its queue
is counted when it runs again.

A worker serves its pool processes' figures on ``METRICS_PORT`` (9101 unless
set), added up from the multiprocess files ``config.worker_metrics`` set up
before anything was imported; beat serves its own on 9102 and counts each
schedule entry it sends. ``METRICS_PORT=0`` serves nothing.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from celery import states
from celery.signals import (
    after_task_publish,
    beat_init,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
)

from emporium.observability import domain_metrics
from emporium.observability.metrics import metrics_serve_at_start

WORKER_METRICS_PORT = 9101
BEAT_METRICS_PORT = 9102

# Task id -> when it started, in this process; a pool process runs one task at a time,
# a threaded pool several.
_started: dict[str, float] = {}


def _task_started(task_id: str = "", **kwargs: Any) -> None:
    _started[task_id] = time.perf_counter()


def _task_name(task: Any) -> str:
    return str(getattr(task, "name", None) or "unknown")


def _task_finished(
    task: Any = None, task_id: str = "", state: str | None = None, **kwargs: Any
) -> None:
    started = _started.pop(task_id, None)
    name = _task_name(task)
    if state == states.SUCCESS:
        domain_metrics.CELERY_TASKS.labels(name, "succeeded").inc()
    if started is not None:
        domain_metrics.CELERY_TASK_DURATION.labels(name).observe(time.perf_counter() - started)


# Failure is final for a task id, yet the main process reports a hard time limit
# twice (its timeout handler, then the pool's error callback): the ids of the
# last failures are kept so each is counted once.
_FAILED_IDS_KEPT = 10_000
_failed_ids: collections.OrderedDict[str, None] = collections.OrderedDict()


def _task_failed(sender: Any = None, task_id: str = "", **kwargs: Any) -> None:
    if task_id:
        if task_id in _failed_ids:
            return
        _failed_ids[task_id] = None
        if len(_failed_ids) > _FAILED_IDS_KEPT:
            _failed_ids.popitem(last=False)
    domain_metrics.CELERY_TASKS.labels(_task_name(sender), "failed").inc()


def _task_retried(sender: Any = None, **kwargs: Any) -> None:
    domain_metrics.CELERY_TASKS.labels(_task_name(sender), "retried").inc()


def _worker_started(**kwargs: Any) -> None:
    metrics_serve_at_start(default_port=WORKER_METRICS_PORT, process="celery worker")


_schedule_of_task: dict[str, str] = {}


def _beat_started(sender: Any = None, **kwargs: Any) -> None:
    schedule: dict[str, dict[str, Any]] = dict(sender.app.conf.beat_schedule or {})
    for entry_name, entry in schedule.items():
        # Two entries of one task cannot be told apart by the message; count it by task.
        task = str(entry.get("task", ""))
        _schedule_of_task[task] = task if task in _schedule_of_task else entry_name
    # Only beat's own publishes are schedule sends: connected here, in beat alone.
    after_task_publish.connect(_schedule_sent, weak=False, dispatch_uid="emporium-beat-sends")
    metrics_serve_at_start(default_port=BEAT_METRICS_PORT, process="celery beat")


def _schedule_sent(sender: str | None = None, **kwargs: Any) -> None:
    task = str(sender or "")
    domain_metrics.BEAT_SCHEDULES_SENT.labels(_schedule_of_task.get(task, task)).inc()


def task_metrics_connect() -> None:
    """Connects the receivers (once per process; Celery keeps receivers weakly by default)."""
    task_prerun.connect(_task_started, weak=False, dispatch_uid="emporium-task-metrics")
    task_postrun.connect(_task_finished, weak=False, dispatch_uid="emporium-task-metrics")
    task_failure.connect(_task_failed, weak=False, dispatch_uid="emporium-task-metrics")
    task_retry.connect(_task_retried, weak=False, dispatch_uid="emporium-task-metrics")
    worker_init.connect(_worker_started, weak=False, dispatch_uid="emporium-task-metrics")
    beat_init.connect(_beat_started, weak=False, dispatch_uid="emporium-task-metrics")
