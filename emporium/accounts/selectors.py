from __future__ import annotations

from django.db.models import QuerySet

from emporium.accounts.models import User


def user_list() -> QuerySet[User]:
    return User.objects.order_by("id")


def username_taken(*, username: str, exclude_id: int | None = None) -> bool:
    queryset = User.objects.filter(username__iexact=username)
    if exclude_id is not None:
        queryset = queryset.exclude(pk=exclude_id)
    return queryset.exists()


def email_taken(*, email: str, exclude_id: int | None = None) -> bool:
    queryset = User.objects.filter(email__iexact=email)
    if exclude_id is not None:
        queryset = queryset.exclude(pk=exclude_id)
    return queryset.exists()
