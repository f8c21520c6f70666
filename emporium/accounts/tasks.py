from celery import shared_task

from emporium.accounts import services


@shared_task(name="accounts.token_families_prune", ignore_result=True)
def token_families_prune() -> int:
    """Deletes sign-in families whose refresh tokens have all expired, in bounded batches.

    Running it twice, or two runs at once, deletes nothing more: a family is
    deleted once, and one still in use has a recent ``updated_at``.
    """
    return services.token_families_prune()


@shared_task(name="accounts.outstanding_tokens_prune", ignore_result=True)
def outstanding_tokens_prune() -> int:
    """Deletes the records of expired refresh tokens, in bounded batches.

    Running it twice, or two runs at once, deletes nothing more: an expired
    token's records are deleted once and no new token is issued expired.
    """
    return services.outstanding_tokens_prune()
