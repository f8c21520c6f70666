"""Sending deliveries in the background, and the outbox handlers that create them.

Deliveries run on the ``default`` queue, each bounded by the request
timeout (``WEBHOOKS_TIMEOUT_SECONDS``) and the task's time limit. A delivery
is sent by ``webhooks.deliver``; a retry is the same task again with a
countdown (RabbitMQ's delayed delivery), and when a delivery finishes the
same run goes on with the next pending one of its aggregate. The
``webhooks.dispatch_due`` sweep (every few seconds, from beat) starts whatever
is due and was not started: after a lost message, a dead worker's lease, or
a subscription enabled again.
"""

from __future__ import annotations

import math

from celery import shared_task
from django.conf import settings
from django.db import transaction

from emporium.integrations import events
from emporium.integrations.models import OutboxEvent
from emporium.integrations.webhooks import services


def _follow_ups_start(follow_ups: list[tuple[int, float]]) -> None:
    for delivery_id, delay in follow_ups:
        if delay <= 0:
            webhook_deliver.apply_async(args=(delivery_id,))
        elif not settings.CELERY_TASK_ALWAYS_EAGER:
            # Whole seconds, at least one: RabbitMQ's delayed delivery counts in seconds.
            webhook_deliver.apply_async(args=(delivery_id,), countdown=max(1, math.ceil(delay)))
        # In-process (eager) tasks cannot wait: the inline sweep sends it later.


# How many deliveries of one aggregate one task sends back to back before it hands
# the rest of the chain to a new task (so one busy order cannot hold a worker long).
CHAIN_LIMIT = 50


@shared_task(
    name="webhooks.deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    time_limit=600,
    soft_time_limit=540,
)
def webhook_deliver(delivery_id: int) -> str:
    """Sends one delivery if it is due and first of its aggregate, then the ones after it.

    When a delivery finishes and the next one of its aggregate may go at once,
    the same run sends it (up to CHAIN_LIMIT), instead of a broker round trip
    per event. Run twice, or twice at once, it sends each delivery once: the
    sender takes a lease on the row with a conditional UPDATE and the other
    run finds nothing to do.
    """
    first: services.Outcome | None = None
    current = delivery_id
    for _ in range(CHAIN_LIMIT):
        result = services.delivery_attempt(delivery_id=current)
        first = first or result.outcome
        _follow_ups_start([(pk, delay) for pk, delay in result.follow_ups if delay > 0])
        following = [pk for pk, delay in result.follow_ups if delay <= 0]
        if not following:
            break
        current = following[0]
    else:
        _follow_ups_start([(current, 0.0)])
    return first.value if first else services.Outcome.SKIPPED.value


@shared_task(name="webhooks.dispatch_due", ignore_result=True, time_limit=60)
def webhooks_dispatch_due() -> int:
    """Starts every delivery that may go now. Running it twice only starts
    duplicate tasks, and each delivery is still sent once (its lease)."""
    due = services.deliveries_due()
    for delivery_id in due:
        webhook_deliver.apply_async(args=(delivery_id,))
    return len(due)


def deliveries_dispatch_due_inline() -> None:
    """The embedded profile's sweep, run after each relay pass in-process."""
    for delivery_id in services.deliveries_due():
        webhook_deliver.apply(args=(delivery_id,))


def _deliveries_create(event: OutboxEvent) -> None:
    """Runs in the relay's transaction: the deliveries exist exactly when the event is
    marked published, and their tasks are queued once that commits."""
    created = services.deliveries_create_for_event(event=event)
    if created:
        transaction.on_commit(lambda: _follow_ups_start([(pk, 0.0) for pk in created]))


for _event_type in services.WEBHOOK_EVENT_TYPES:
    events.on_event(_event_type)(_deliveries_create)
