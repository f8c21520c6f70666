from __future__ import annotations

from django.db.models import QuerySet

from emporium.accounts.models import User
from emporium.core.usernames import username_fold


def user_get(*, pk: int) -> User:
    """One account by id; ``User.DoesNotExist`` when it is gone."""
    return User.objects.get(pk=pk)


def user_list() -> QuerySet[User]:
    return User.objects.order_by("id")


def username_taken(*, username: str, exclude_id: int | None = None) -> bool:
    """Whether another account already answers to ``username`` (same fold)."""
    queryset = User.objects.filter(username_key=username_fold(username))
    if exclude_id is not None:
        queryset = queryset.exclude(pk=exclude_id)
    return queryset.exists()


def email_taken(*, email: str, exclude_id: int | None = None) -> bool:
    queryset = User.objects.filter(email__iexact=email)
    if exclude_id is not None:
        queryset = queryset.exclude(pk=exclude_id)
    return queryset.exists()
