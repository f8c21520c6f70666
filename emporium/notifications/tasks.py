"""The notifications app's background work (queue ``notifications``).

Every task takes ids and is idempotent: what it writes is unique per
recipient and dedup key, so a second run (a redelivered message after a
worker died, a retry) writes nothing new.
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings

from emporium.integrations import events
from emporium.integrations.models import OutboxEvent
from emporium.notifications import broadcasts, services, triggers


@shared_task(
    name="notifications.event_notify",
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)
def event_notify(event_id: str) -> int:
    """Sends the notifications of one domain event. A second run sends nothing
    (each message's decision is unique per recipient, channel and event id)."""
    event = OutboxEvent.objects.filter(pk=event_id).first()
    if event is None:
        return 0
    outcome = triggers.event_notify(
        event_id=str(event.pk), event_type=event.event_type, payload=event.payload
    )
    return outcome.in_app + outcome.external


def _queue_notify(event: OutboxEvent) -> None:
    event_notify.apply_async(args=(str(event.pk),))


for _event_type in triggers.HANDLED_EVENTS:
    events.on_event(_event_type)(_queue_notify)


@shared_task(
    name=broadcasts.BATCH_TASK,
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,
    # A batch is thousands of rows in one statement; it needs more than a request.
    time_limit=600,
)
def broadcast_batch(broadcast_id: int, number: int) -> int:
    """Writes one batch of a broadcast. A second run finds the batch done and does nothing."""
    return broadcasts.broadcast_batch_run(broadcast_id=broadcast_id, number=number)


@shared_task(name="notifications.broadcasts_resume", ignore_result=True)
def broadcasts_resume() -> int:
    """Queues again the batches of broadcasts that stopped moving (say, RabbitMQ refused
    them at creation). Batches already done are skipped, so running it twice is harmless."""
    idle = dt.timedelta(seconds=settings.EMPORIUM_NOTIFICATIONS_BROADCAST_STALL_SECONDS)
    return sum(
        broadcasts.broadcast_batches_queue(broadcast_id=broadcast_id)
        for broadcast_id in broadcasts.broadcasts_stalled(idle_for=idle)
    )


@shared_task(name="notifications.digests_release", ignore_result=True)
def digests_release() -> int:
    """Sends the digests that are due. Held rows are stamped with their digest, so a
    second run finds nothing to send."""
    released = 0
    while sent := services.digests_release():
        released += sent
    return released


@shared_task(name="notifications.prune", ignore_result=True)
def prune() -> int:
    """Deletes read notifications past the retention and old throttle decisions.
    A second run deletes what became old since."""
    days = int(settings.EMPORIUM_NOTIFICATIONS_READ_RETENTION_DAYS)
    removed = services.notifications_prune_read(older_than=dt.timedelta(days=days))
    return removed + services.dispatches_prune(older_than=dt.timedelta(days=1))
