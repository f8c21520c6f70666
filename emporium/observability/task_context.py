"""The request id crosses the broker with each Celery task.

A task published while a request id is bound carries it as the message
header ``request_id``; the worker binds it again before the task runs, with
the task's name and id, so the task's log lines (and the tasks, events and
provider calls it starts in turn) carry the id of the request that caused
them. A task nobody's request started (beat's schedule) gets an id of its own.

Tasks run in-process (the embedded profile, ``apply()``) already run in their
caller's context and are left alone. Trace context crosses in the same
headers, put there by OpenTelemetry's Celery instrumentation when tracing is
on (``emporium.observability.tracing``).
"""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.signals import before_task_publish, setup_logging, task_prerun

from emporium.core import correlation


def _request_id_carry(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    request_id = correlation.request_id_current()
    if headers is not None and request_id is not None:
        headers.setdefault(correlation.CARRIER_KEY, request_id)


def _request_id_bind(task: Task[Any, Any] | None = None, task_id: str = "", **kwargs: Any) -> None:
    if task is None or task.request.is_eager:
        return
    carried = getattr(task.request, correlation.CARRIER_KEY, None)
    correlation.request_id_bind(
        correlation.request_id_accept(carried if isinstance(carried, str) else None),
        task=task.name,
        task_id=task_id,
    )


def _logging_kept(**kwargs: Any) -> None:
    """A worker keeps the logging Django configured: Celery installs its own only when
    nothing answers this signal, and its lines would then be in another format."""


def task_context_connect() -> None:
    """Connects the signal handlers (once per process)."""
    setup_logging.connect(_logging_kept, weak=False, dispatch_uid="emporium-logging")
    before_task_publish.connect(_request_id_carry, weak=False, dispatch_uid="emporium-request-id")
    task_prerun.connect(_request_id_bind, weak=False, dispatch_uid="emporium-request-id")
