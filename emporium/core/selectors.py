"""Small read helpers shared by the domain apps."""

from __future__ import annotations

from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model, QuerySet

from emporium.core.errors import NotFound

ModelT = TypeVar("ModelT", bound=Model)

ID_MAX = 2**63 - 1
"""The largest primary key a row can have: BigAutoField, PostgreSQL's bigint."""


def id_in_range(value: int) -> bool:
    """Whether ``value`` can be a row's id; raw SQL given any other fails in PostgreSQL."""
    return 1 <= value <= ID_MAX


def get_or_not_found(queryset: QuerySet[ModelT], **lookup: Any) -> ModelT:
    """One row of ``queryset`` or NotFound: rows outside the queryset look missing."""
    try:
        return queryset.get(**lookup)
    except (ObjectDoesNotExist, ValueError, TypeError):
        raise NotFound() from None
