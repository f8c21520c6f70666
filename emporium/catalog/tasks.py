"""Background work of the catalog: applying product imports."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction

from emporium.catalog.imports import services as import_services
from emporium.catalog.models import ProductImport

logger = logging.getLogger(__name__)


def product_import_enqueue(*, import_id: int) -> None:
    """Queues the import's run once the current transaction commits."""
    transaction.on_commit(lambda: product_import_run.apply_async(args=(import_id,)))


@shared_task(
    name="catalog.product_import_run",
    ignore_result=True,
    acks_late=True,
    # A run stops after CATALOG_IMPORT_TASK_SECONDS and queues its continuation, so
    # a long file never holds one delivery for long, and other tasks get a turn.
    soft_time_limit=240,
    time_limit=300,
)
def product_import_run(import_id: int) -> None:
    """Applies the import's chunks for up to CATALOG_IMPORT_TASK_SECONDS, then requeues.

    Twice, or by two workers at once: each chunk is applied under the import's
    row lock from the byte offset the previous chunk committed, so the second
    run waits, then continues where the first stopped (or finds it finished)
    and no row is applied twice. Cancellation is seen between chunks. In the
    embedded profile (tasks in-process) the whole file is applied at once.
    """
    if not ProductImport.objects.filter(pk=import_id).exists():
        logger.warning("import %s does not exist; nothing to run", import_id)
        return
    eager = bool(settings.CELERY_TASK_ALWAYS_EAGER)
    budget = None if eager else float(settings.CATALOG_IMPORT_TASK_SECONDS)
    if import_services.import_run(import_id=import_id, time_budget_seconds=budget):
        product_import_run.apply_async(args=(import_id,))


@shared_task(name="catalog.product_imports_resume", ignore_result=True)
def product_imports_resume() -> int:
    """Queues a run for every unfinished import that stopped moving; returns how many.

    Also deletes partial uploads a day old (a request that died mid-body).

    From beat. Twice: the runs it queues are themselves safe to repeat (each
    waits for the import's row lock and continues from the committed offset).
    """
    stalled = import_services.imports_stalled(
        quiet_seconds=float(settings.CATALOG_IMPORT_STALLED_SECONDS)
    )
    for import_id in stalled:
        product_import_run.apply_async(args=(import_id,))
    import_services.uploads_abandoned_remove(older_than_seconds=24 * 3600)
    return len(stalled)
