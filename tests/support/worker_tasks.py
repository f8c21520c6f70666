"""Test-only Celery tasks that misbehave on purpose, for real workers started by tests.

A worker loads this module with ``--include tests.support.worker_tasks`` and
consumes :data:`TEST_QUEUE_NAME`; tests send these tasks there explicitly
(``apply_async(queue=misbehaving_queue())``). That queue is declared exactly like the
work queues of ``config.celery`` (quorum, dead-lettered to ``emporium.dlx``)
but with its own small delivery limit: quorum queue arguments are fixed when
the queue is first declared, so the shared work queues cannot be reused with
a different limit.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_init
from kombu import Queue

from config.celery import _work_queue

TEST_QUEUE_NAME = "emporium.test.misbehaving"
TEST_QUEUE_DELIVERY_LIMIT = 2


def misbehaving_queue() -> Queue:
    declared = _work_queue(TEST_QUEUE_NAME)
    return Queue(
        declared.name,
        declared.exchange,
        routing_key=declared.routing_key,
        durable=True,
        queue_arguments={**declared.queue_arguments, "x-delivery-limit": TEST_QUEUE_DELIVERY_LIMIT},
    )


@worker_init.connect
def _consume_test_queue(sender: Any, **kwargs: Any) -> None:
    # `-Q emporium.test.misbehaving` made a plain classic queue of the unknown
    # name before this module was imported; consume the real declaration instead.
    sender.app.amqp.queues.select_add(misbehaving_queue())


def _note_delivery(marker: str) -> None:
    with Path(marker).open("a") as file:
        file.write(f"{os.getpid()}\n")


@shared_task(name="tests.kill_pool_process", acks_late=True, reject_on_worker_lost=True)
def kill_pool_process(marker: str) -> None:
    """Dies with SIGKILL on every delivery, taking only its pool process with it."""
    _note_delivery(marker)
    os.kill(os.getpid(), signal.SIGKILL)


@shared_task(name="tests.kill_worker", acks_late=True, reject_on_worker_lost=True)
def kill_worker(marker: str) -> None:
    """Dies with SIGKILL on every delivery, taking the whole worker (its process group)."""
    _note_delivery(marker)
    os.killpg(os.getpgrp(), signal.SIGKILL)


@shared_task(bind=True, name="tests.retry_once", acks_late=True)
def retry_once(self: Task, marker: str, countdown: float, journal: str) -> None:
    """Asks to be retried after ``countdown`` seconds once; notes each run in ``journal``."""
    _note_delivery(marker)
    with Path(journal).open("a") as file:
        file.write(f"{Path(marker).name}\n")
    if self.request.retries == 0:
        # A retry is routed afresh (by task name), so it has to be told its queue.
        raise self.retry(countdown=countdown, max_retries=1, queue=TEST_QUEUE_NAME)


@shared_task(name="tests.note_backend_pid", acks_late=True)
def note_backend_pid(marker: str) -> None:
    """Notes the PostgreSQL server process that served this task's query."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    with Path(marker).open("a") as file:
        file.write(f"{pid}\n")
