"""The Celery application and its RabbitMQ topology.

Three work queues (payments, email, default) are durable quorum queues: a
message is dead-lettered to ``emporium.dead`` after ``x-delivery-limit``
deliveries, so a task that keeps killing its worker is parked instead of
looping forever. Tasks acknowledge late and are re-queued if the worker
dies, so every task must be idempotent (each says what a second run does).
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.embedded")

DELIVERY_LIMIT = int(os.environ.get("CELERY_DELIVERY_LIMIT", "5"))

work_exchange = Exchange("emporium.tasks", type="direct", durable=True)
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
    _work_queue("default"),
    Queue(
        "emporium.dead",
        dead_letter_exchange,
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    ),
)

app = Celery("emporium")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=TASK_QUEUES,
    task_default_queue="default",
    task_default_exchange=work_exchange.name,
    task_default_routing_key="default",
    task_routes={
        "payments.*": {"queue": "payments", "routing_key": "payments"},
        "orders.send_confirmation_email": {"queue": "email", "routing_key": "email"},
    },
)
app.autodiscover_tasks()
