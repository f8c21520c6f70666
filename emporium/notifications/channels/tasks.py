"""Background delivery work: one task per batch of deliveries, and the sweep.

Both are safe to run any number of times: a batch claims only rows that are
due and not held by another worker, and records only rows it claimed.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from emporium.notifications.channels import services


@shared_task(
    name=services.DELIVER_BATCH_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    time_limit=300,
    soft_time_limit=280,
)
def deliver_batch(channel: str, delivery_ids: list[int]) -> dict[str, Any]:
    """Sends one batch. Run twice, the second run finds the rows sent (or held) and sends nothing.

    Push goes on with the channel's other due rows while its last requests are
    in flight (``continue_with_due``); their own tasks then claim nothing.
    A worker killed mid-batch leaves its unrecorded rows claimed; the message is
    re-queued by RabbitMQ, and its rows are sent once their lease runs out.
    """
    return services.deliveries_send(
        channel=channel, delivery_ids=delivery_ids, continue_with_due=True
    )


@shared_task(name="notification_channels.deliveries_sweep", ignore_result=True, time_limit=120)
def deliveries_sweep() -> int:
    """Queues deliveries whose retry is overdue or whose worker died.

    Run twice, it queues them twice; each row is still claimed and sent once.
    """
    return services.deliveries_due_dispatch()


@shared_task(name="notification_channels.deliveries_prune", ignore_result=True, time_limit=900)
def deliveries_prune() -> int:
    """Deletes finished deliveries past their retention; a second run deletes nothing more."""
    return services.deliveries_prune()
