from celery import shared_task

from emporium.core.idempotency import idempotency_keys_purge as purge


@shared_task(name="core.idempotency_keys_purge", ignore_result=True)
def idempotency_keys_purge() -> int:
    """Deletes expired Idempotency-Key rows. Running twice deletes nothing more."""
    return purge()
