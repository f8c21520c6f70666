"""The staff roles: which Django group grants which model permissions.

Every account is a customer: it acts on its own cart, orders and reviews, which
needs no model permission (the selectors scope those rows to their owner).
The other roles are Django groups holding explicit model permissions, and the
API checks those permissions, never ``is_staff``:

- support reads every order (with its items, status changes, payments and
  shipments) and every customer account, and watches the live operations
  dashboard; it changes nothing;
- catalog_manager changes the catalog (products with their prices and stock,
  categories) and sees no order or customer;
- admin holds every permission. A superuser has every permission as well.

``ROLE_PERMISSIONS`` is the one table; ``roles_sync`` makes the groups match
it, and runs after every ``migrate`` (so permissions of models added later
reach the admin group) as well as from the data migration that first creates
the groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.db import transaction

from emporium.accounts.models import User


class Role(StrEnum):
    CUSTOMER = "customer"
    SUPPORT = "support"
    CATALOG_MANAGER = "catalog_manager"
    ADMIN = "admin"


ALL_PERMISSIONS = "*"

ROLE_PERMISSIONS: Mapping[Role, frozenset[str] | str] = {
    Role.CUSTOMER: frozenset(),
    Role.SUPPORT: frozenset(
        {
            "accounts.view_user",
            "orders.view_order",
            "orders.view_orderitem",
            "orders.view_orderstatuschange",
            "payments.view_payment",
            "delivery.view_shipment",
            "dashboard.view_dashboard",
        }
    ),
    Role.CATALOG_MANAGER: frozenset(
        f"catalog.{verb}_{model}"
        for verb in ("view", "add", "change", "delete")
        for model in ("product", "category")
    ),
    Role.ADMIN: ALL_PERMISSIONS,
}

# Roles that work in the back office: their members may sign in to the admin
# site, where Django shows each of them only what their permissions allow.
STAFF_ROLES = frozenset({Role.SUPPORT, Role.CATALOG_MANAGER, Role.ADMIN})


class UnknownPermission(LookupError):
    """The role table names a permission no installed model has."""


def _permission_ids(
    *, permission_model: Any, names: frozenset[str] | str, strict: bool
) -> set[int]:
    if names == ALL_PERMISSIONS:
        return set(permission_model.objects.values_list("pk", flat=True))
    wanted = {tuple(name.split(".", 1)) for name in names}
    found = {
        (app_label, codename): pk
        for pk, app_label, codename in permission_model.objects.filter(
            codename__in={codename for _, codename in wanted}
        ).values_list("pk", "content_type__app_label", "codename")
    }
    missing = wanted - found.keys()
    if missing and strict:
        raise UnknownPermission(", ".join(sorted(".".join(name) for name in missing)))
    return {found[name] for name in wanted if name in found}


def roles_sync(
    *,
    apps: Apps | None = None,
    table: Mapping[Role, frozenset[str] | str] | Mapping[str, frozenset[str] | str] | None = None,
    strict: bool = True,
) -> None:
    """Creates the role groups and gives each exactly the permissions of its row.

    Idempotent. ``apps`` is the migration state when called from a migration
    (whose table may name permissions that do not exist yet: ``strict=False``
    skips those); by default the installed models and ``ROLE_PERMISSIONS``.
    """
    registry = apps or global_apps
    group_model = registry.get_model("auth", "Group")
    permission_model = registry.get_model("auth", "Permission")
    with transaction.atomic():
        for role, names in (table or ROLE_PERMISSIONS).items():
            group, _ = group_model.objects.get_or_create(name=str(role))
            group.permissions.set(
                _permission_ids(permission_model=permission_model, names=names, strict=strict)
            )


def permissions_create_all(*, apps: Apps | None = None, verbosity: int = 0) -> None:
    """Creates the content types and model permissions of every app, as ``migrate`` does last.

    The role groups are filled before ``migrate`` has finished, when Django has
    not yet created the permissions of every app; this creates them first.
    ``apps`` is the migration state to read the models from (installed ones by
    default); apps absent from it are skipped.
    """
    from django.contrib.auth.management import create_permissions

    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=verbosity, apps=apps or global_apps)


def roles_sync_after_migrate(sender: Any, *, apps: Apps = global_apps, **kwargs: Any) -> None:
    """``post_migrate`` receiver: brings the groups up to date once per ``migrate``.

    Lenient about unknown permissions, since ``migrate`` may have stopped at
    an older state; the test suite checks the table against the models.
    """
    if sender.label != "accounts":
        return
    permissions_create_all(apps=apps, verbosity=int(kwargs.get("verbosity", 0)))
    roles_sync(apps=apps, strict=False)


def user_role_assign(*, user: User, role: Role) -> User:
    """Makes ``role`` the user's only role; staff roles may use the admin site.

    Superuser status is left as it is: it is granted outside the roles.
    """
    group_model = global_apps.get_model("auth", "Group")
    with transaction.atomic():
        group = group_model.objects.get(name=str(role))
        user.groups.set([group])
        user.is_staff = role in STAFF_ROLES
        user.save(update_fields=["is_staff", "updated_at"])
    # The permission cache of this object still describes the old groups.
    for cached in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cached, None)
    return user


def user_roles(*, user: User) -> set[Role]:
    names: Iterable[str] = user.groups.values_list("name", flat=True)
    return {Role(name) for name in names if name in Role._value2member_map_}
