"""Background order work: the confirmation e-mail and the unpaid-order expiry."""

from __future__ import annotations

import contextlib

from celery import Task, shared_task
from django.core.cache import cache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

from emporium.integrations import events
from emporium.integrations.models import OutboxEvent
from emporium.orders import services
from emporium.orders.emails import order_confirmation_message
from emporium.orders.models import Order

# The confirmation task's hard time limit, and how long a run's claim on an
# order's confirmation lasts: longer than the run can live, so a claim only
# lapses once its run has ended one way or another.
CONFIRMATION_TIME_LIMIT_SECONDS = 60
CONFIRMATION_CLAIM_SECONDS = 2 * CONFIRMATION_TIME_LIMIT_SECONDS


# What the cache raises while Redis is unreachable (django-redis wraps redis-py's errors).
_CACHE_ERRORS = (RedisError, ConnectionInterrupted)


def _confirmation_claim_key(order_id: int) -> str:
    return f"orders:confirmation-claim:{order_id}"


def _retry_countdown(retries: int) -> int:
    return min(600, 5 * 2**retries)


@shared_task(
    bind=True,
    name="orders.send_confirmation_email",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
    time_limit=CONFIRMATION_TIME_LIMIT_SECONDS,
    soft_time_limit=CONFIRMATION_TIME_LIMIT_SECONDS - 10,
    ignore_result=True,
)
def send_confirmation_email(self: Task[[int], str], order_id: int) -> str:
    """Sends the order confirmation once, holding no database lock while SMTP talks.

    1. Claim: an atomic add of a short-lived entry in the shared cache (Redis
       in production). Of two runs at once, one holds the claim; the other
       retries later and then finds the order stamped.
    2. Read the order (no lock, no transaction): stamped means already sent.
    3. Send, with no transaction open: cancelling or paying the order meanwhile
       is never held up by a slow mail server.
    4. Record: a conditional UPDATE stamps ``confirmation_sent_at`` if it is
       still empty, so recording twice changes nothing.

    Run twice in a row it sends once. A run that dies after the SMTP server
    took the message but before step 4 sends it again on redelivery (a rare
    duplicate is preferred to a lost confirmation); its claim lapses after
    :data:`CONFIRMATION_CLAIM_SECONDS`, beyond the task's hard time limit.
    """
    key = _confirmation_claim_key(order_id)
    try:
        claimed = cache.add(key, self.request.id or "eager", timeout=CONFIRMATION_CLAIM_SECONDS)
    except _CACHE_ERRORS as error:  # no claim without the cache: try again later
        raise self.retry(countdown=_retry_countdown(self.request.retries), exc=error) from error
    if not claimed:
        # Another run is sending this confirmation now; look again once it is done.
        raise self.retry(countdown=_retry_countdown(self.request.retries))
    try:
        order = Order.objects.select_related("user").filter(pk=order_id).first()
        if order is None or order.confirmation_sent_at is not None:
            return "already_sent"
        try:
            order_confirmation_message(order=order).send()
        except OSError as error:  # SMTP unreachable or refused: try again later
            raise self.retry(countdown=_retry_countdown(self.request.retries), exc=error) from error
        services.order_confirmation_record(order_id=order_id)
    finally:
        with contextlib.suppress(*_CACHE_ERRORS):  # else the claim lapses by itself
            cache.delete(key)
    return "sent"


@shared_task(name="orders.expire_unpaid", ignore_result=True)
def expire_unpaid() -> int:
    """Cancels orders unpaid past the timeout. A second run finds nothing left to do."""
    return services.orders_expire_unpaid()


@events.on_event(events.ORDER_PLACED)
def _queue_confirmation(event: OutboxEvent) -> None:
    send_confirmation_email.apply_async(args=(event.payload["order_id"],))
