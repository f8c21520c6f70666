"""Sign-in families and simplejwt's token records go once no token of theirs can be used."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from emporium.accounts import services, tasks
from emporium.accounts.models import TokenFamily
from emporium.core.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LIFETIME = jwt_settings.REFRESH_TOKEN_LIFETIME
MINUTE = timedelta(minutes=1)


def sign_in(*, age: timedelta = timedelta(0), revoked: bool = False) -> tuple[UUID, str]:
    """A real sign-in whose newest token was issued (or which was revoked) ``age`` ago."""
    user = UserFactory()
    pair = services.token_pair_issue(user=user)
    if revoked:
        services.refresh_token_revoke(token=pair.refresh)
    family = TokenFamily.objects.get(user=user)
    TokenFamily.objects.filter(pk=family.pk).update(updated_at=timezone.now() - age)
    return family.pk, pair.refresh


def remaining() -> set[UUID]:
    return set(TokenFamily.objects.values_list("pk", flat=True))


def test_prune_deletes_expired_and_old_revoked_families_only() -> None:
    expired, _ = sign_in(age=LIFETIME + MINUTE)
    revoked_long_ago, _ = sign_in(age=LIFETIME + MINUTE, revoked=True)
    live, live_token = sign_in(age=LIFETIME - MINUTE)
    revoked_lately, _ = sign_in(age=LIFETIME - MINUTE, revoked=True)

    assert services.token_families_prune() == 2

    assert remaining() == {live, revoked_lately}
    # The family that is kept still works: its token is exchanged for a new pair.
    services.refresh_token_rotate(token=live_token)
    assert {expired, revoked_long_ago} & remaining() == set()


def test_a_family_is_pruned_only_after_its_newest_token_has_expired() -> None:
    family, refresh = sign_in()
    issued = TokenFamily.objects.get(pk=family).updated_at

    assert services.token_families_prune(now=issued + LIFETIME - MINUTE) == 0
    assert services.token_families_prune(now=issued + LIFETIME + MINUTE) == 1
    assert remaining() == set()
    # A token of a pruned family is refused like any unknown one.
    with pytest.raises(TokenError):
        services.refresh_token_rotate(token=refresh)


def test_prune_works_in_bounded_batches() -> None:
    families = {sign_in(age=LIFETIME + MINUTE * (index + 1))[0] for index in range(5)}
    kept, _ = sign_in()

    assert services.token_families_prune(batch_size=2, max_batches=2) == 4
    assert len(remaining() & families) == 1
    assert services.token_families_prune(batch_size=2, max_batches=2) == 1
    assert remaining() == {kept}


def test_the_periodic_task_is_idempotent() -> None:
    sign_in(age=LIFETIME + MINUTE)
    kept, _ = sign_in()

    assert tasks.token_families_prune() == 1
    assert tasks.token_families_prune() == 0
    assert remaining() == {kept}


def test_the_task_is_on_the_beat_schedule() -> None:
    from django.conf import settings

    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"accounts.token_families_prune", "accounts.outstanding_tokens_prune"} <= scheduled


def test_expired_token_records_are_pruned_and_live_ones_kept() -> None:
    """An expired refresh token's records go, blacklist entry included; a live one stays."""
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    _, rotated_away = sign_in()
    services.refresh_token_rotate(token=rotated_away)  # blacklists the first token
    sign_in()  # a live sign-in: its token is not expired until LIFETIME has passed
    issued = OutstandingToken.objects.count()
    assert (issued, BlacklistedToken.objects.count()) == (3, 1)

    assert services.outstanding_tokens_prune(now=timezone.now() + LIFETIME - MINUTE) == 0
    assert services.outstanding_tokens_prune(now=timezone.now()) == 0
    later = timezone.now() + LIFETIME + MINUTE
    # Three outstanding rows and the blacklist row that cascades with one of them.
    assert services.outstanding_tokens_prune(now=later) == 4
    assert (OutstandingToken.objects.count(), BlacklistedToken.objects.count()) == (0, 0)
    assert tasks.outstanding_tokens_prune() == 0  # nothing expired is left


def test_token_records_are_pruned_in_bounded_batches() -> None:
    """A backlog is worked off over several runs, each with a bounded number of deletes."""
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    for _ in range(5):
        sign_in()
    later = timezone.now() + LIFETIME + MINUTE

    assert services.outstanding_tokens_prune(now=later, batch_size=2, max_batches=2) == 4
    assert OutstandingToken.objects.count() == 1
    assert services.outstanding_tokens_prune(now=later, batch_size=2, max_batches=2) == 1
    assert OutstandingToken.objects.count() == 0
