"""Test-only Celery tasks with a known outcome each, for a real worker started by a test.

The worker imports this module with ``--include`` and consumes a queue of the
test's own; a retry is told that queue (Celery routes a retry afresh by name).
"""

from __future__ import annotations

import time

from celery import Task, shared_task

TASKS_MODULE = "emporium.observability.tests.metric_tasks"


@shared_task(name="tests.metrics.succeed", ignore_result=True)
def succeed() -> str:
    return "done"


@shared_task(name="tests.metrics.fail", ignore_result=True)
def fail() -> None:
    raise ValueError("fails on purpose")


@shared_task(bind=True, name="tests.metrics.retry_once", ignore_result=True, max_retries=1)
def retry_once(self: Task[[str], str], queue: str) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=1, queue=queue)
    return "done on the second run"


@shared_task(name="tests.metrics.overrun", ignore_result=True, time_limit=1, soft_time_limit=None)
def overrun() -> None:
    """Killed by its hard time limit: the worker's main process reports the failure."""
    time.sleep(30)
