from celery import shared_task

from emporium.integrations.relay import outbox_relay_pending


@shared_task(name="integrations.outbox_relay", ignore_result=True)
def outbox_relay() -> int:
    """Periodic safety net for the relay daemon. Running it twice only publishes
    each pending event once per pass; consumers deduplicate by event id."""
    return outbox_relay_pending()
