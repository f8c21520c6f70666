"""The Celery application and its RabbitMQ topology.

Five work queues (payments, email, push, notifications, default) are durable quorum queues: a
message is dead-lettered to ``emporium.dead`` after ``x-delivery-limit``
deliveries, so a task that keeps killing its worker is parked instead of
looping forever. Tasks acknowledge late and are re-queued if the worker
dies, so every task must be idempotent (each says what a second run does).

The work exchange is a *topic* exchange: quorum queues cannot hold a message
back until its ETA, so Celery delays ``countdown``/``eta`` tasks (retries with
backoff) through RabbitMQ ("native delayed delivery", Celery 5.5+), which only
routes back to topic or fanout exchanges. With a direct exchange every worker
keeps a delayed task in memory instead and, with prefetch 1, takes nothing else
from its queue until that task's ETA: one payment in backoff stalls them all.
(The exchange has a new name because an existing exchange cannot change type.)
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from celery import Celery, bootsteps
from celery.fixups import django as celery_django
from kombu import Exchange, Queue

from config.settings.env import ENV

# Production unless told otherwise: it refuses to start without its secrets, so a
# deployment that forgets DJANGO_SETTINGS_MODULE fails instead of serving. The
# config package imports this module, so this default holds for every process
# that imports anything under config/ (tests/test_settings_defaults.py).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Read through the settings' environment module, like every other setting.
DELIVERY_LIMIT = ENV.celery_delivery_limit

work_exchange = Exchange("emporium.work", type="topic", durable=True)
dead_letter_exchange = Exchange("emporium.dlx", type="fanout", durable=True)


def _work_queue(name: str) -> Queue:
    return Queue(
        name,
        work_exchange,
        routing_key=name,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": dead_letter_exchange.name,
        },
    )


TASK_QUEUES = (
    _work_queue("payments"),
    _work_queue("email"),
    _work_queue("push"),
    _work_queue("notifications"),
    _work_queue("default"),
)
# Parked messages wait here for a person. It is kept out of ``task_queues``:
# a worker started without -Q consumes all of those and would run them again.
DEAD_LETTER_QUEUE = Queue(
    "emporium.dead",
    dead_letter_exchange,
    durable=True,
    queue_arguments={"x-queue-type": "quorum"},
)


class DeadLetterTopology(bootsteps.StartStopStep):
    """Declares the dead-letter exchange and queue whenever a worker connects.

    A worker declares only the queues it consumes; without this step
    ``emporium.dlx`` would never exist and RabbitMQ would silently drop every
    message the work queues dead-letter.
    """

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, parent: Any) -> None:
        channel = parent.connection.channel()
        try:
            DEAD_LETTER_QUEUE.bind(channel).declare()
        finally:
            channel.close()


# celery-types has no stub of DjangoWorkerFixup.
class PoolKeepingWorkerFixup(celery_django.DjangoWorkerFixup):  # type: ignore[name-defined]
    """Celery's Django fix-up for a worker, with each process's connection pool kept between tasks.

    Celery 5.7's fix-up closes Django's psycopg pool (``close_pool``) before and
    after every task of a prefork child (celery/celery#10554), so each task
    opened its connections anew: a PostgreSQL server process forked and a
    SCRAM handshake hashed on both sides, several times per order (its
    confirmation, its notification, their delivery). Here a task's start and
    end only give its connections back to the pool (``close()`` returns a
    pooled connection; without a pool it closes it, as Celery does). Where
    Celery closes the pool for a fork's sake it still does: in the worker's
    main process before it forks its children, and in each child as it starts.
    """

    def on_task_prerun(self, sender: Any, **kwargs: Any) -> None:
        if not getattr(sender.request, "is_eager", False):
            self.connections_release()

    def on_task_postrun(self, sender: Any, **kwargs: Any) -> None:
        if not getattr(sender.request, "is_eager", False):
            self.connections_release()
            self.close_cache()

    def connections_release(self) -> None:
        for connection in self._db.connections.all(initialized_only=True):
            with contextlib.suppress(*self.interface_errors):
                connection.close()


class PoolKeepingDjangoFixup(celery_django.DjangoFixup):
    """Celery's Django fix-up, handing the worker :class:`PoolKeepingWorkerFixup`."""

    _pool_keeping: PoolKeepingWorkerFixup | None = None

    @property
    def worker_fixup(self) -> PoolKeepingWorkerFixup:
        if self._pool_keeping is None:
            self._pool_keeping = PoolKeepingWorkerFixup(self.app)
        return self._pool_keeping


def django_fixup(celery: Celery) -> celery_django.DjangoFixup:
    """Installed in place of Celery's built-in Django fix-up (``celery.fixups.django:fixup``)."""
    fixup = PoolKeepingDjangoFixup(celery)
    fixup.install()
    return fixup


app = Celery("emporium", fixups=["config.celery:django_fixup"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=TASK_QUEUES,
    task_default_queue="default",
    task_default_exchange=work_exchange.name,
    task_default_exchange_type=work_exchange.type,
    task_default_routing_key="default",
    task_routes={
        "payments.*": {"queue": "payments", "routing_key": "payments"},
        "orders.send_confirmation_email": {"queue": "email", "routing_key": "email"},
        # Event triggers and broadcast batches: their own queue, scaled on its own.
        "notifications.*": {"queue": "notifications", "routing_key": "notifications"},
    },
)
app.steps["consumer"].add(DeadLetterTopology)
app.autodiscover_tasks()
