"""Background order work: the confirmation e-mail and the unpaid-order expiry."""

from __future__ import annotations

from celery import Task, shared_task
from django.db import transaction

from emporium.integrations import events
from emporium.integrations.models import OutboxEvent
from emporium.orders import services
from emporium.orders.emails import order_confirmation_message
from emporium.orders.models import Order


@shared_task(
    bind=True,
    name="orders.send_confirmation_email",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
    time_limit=60,
    soft_time_limit=50,
    ignore_result=True,
)
def send_confirmation_email(self: Task, order_id: int) -> str:
    """Sends the order confirmation once.

    The order row is locked while sending and stamped in the same transaction,
    so two runs never both send; a run that dies after the SMTP server took
    the message but before the commit sends it again on redelivery (a rare
    duplicate is preferred to a lost confirmation).
    """
    try:
        with transaction.atomic():
            order = (
                Order.objects.select_for_update(of=("self",))
                .select_related("user")
                .filter(pk=order_id)
                .first()
            )
            if order is None or order.confirmation_sent_at is not None:
                return "already_sent"
            order_confirmation_message(order=order).send()
            services.order_confirmation_claim(order_id=order_id)
    except OSError as error:  # SMTP unreachable or refused: try again later
        raise self.retry(countdown=min(600, 5 * 2**self.request.retries), exc=error) from error
    return "sent"


@shared_task(name="orders.expire_unpaid", ignore_result=True)
def expire_unpaid() -> int:
    """Cancels orders unpaid past the timeout. A second run finds nothing left to do."""
    return services.orders_expire_unpaid()


@events.on_event(events.ORDER_PLACED)
def _queue_confirmation(event: OutboxEvent) -> None:
    send_confirmation_email.apply_async(args=(event.payload["order_id"],))
