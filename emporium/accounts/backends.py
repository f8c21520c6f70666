"""Django's model backend, with an account's permissions read in one query.

The API asks ``has_perm`` on most requests (the selectors decide from it
whether a caller sees everyone's rows or only their own), so the account's
own permissions and those of its groups (its role) are read together, once
per request, instead of in Django's two queries. A signed-in API request's
user arrives with them already filled in from the authentication state
(``emporium.accounts.access``), and asks nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db.models import Q


def permission_names(*, user_id: int, is_superuser: bool) -> set[str]:
    """``app_label.codename`` of every permission an active account has, directly or by role."""
    permissions = Permission.objects.all()
    if not is_superuser:
        permissions = permissions.filter(Q(user=user_id) | Q(group__user=user_id))
    return {
        f"{app_label}.{codename}"
        for app_label, codename in permissions.values_list(
            "content_type__app_label", "codename"
        ).distinct()
    }


class RolePermissionBackend(ModelBackend):
    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            user_obj._perm_cache = permission_names(
                user_id=user_obj.pk, is_superuser=user_obj.is_superuser
            )
        cached: set[str] = user_obj._perm_cache
        return cached
