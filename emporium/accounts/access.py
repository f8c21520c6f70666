"""What a signed-in request needs to know about its user, without PostgreSQL on every request.

A Bearer token proves who the caller is until it expires (15 minutes); what it
cannot say is whether the account is still active now, and what the account may
do. That small state (:class:`UserState`: the account's public fields, its
flags and its permission names) is read from PostgreSQL once and kept in two
tiers (docs/adr/0034-authentication-state-cache.md):

- **in the process**, for at most ``AUTH_STATE_LOCAL_SECONDS`` (5 s): most
  signed-in requests find it here and cost no round trip at all;
- **in Redis** (the default cache), for at most ``AUTH_STATE_SHARED_SECONDS``
  (60 s), so the processes of a deployment read PostgreSQL once per user
  between them.

Every change to an account that goes through the ORM (``save``, ``delete``,
the role and permission relations) or is announced as a revocation
(:mod:`emporium.accounts.revocation`: deactivation, deletion, a revoked token
family) forgets the state once its transaction commits: the process that made
the change drops its own copy, and Redis gets a *tombstone* for
``TOMBSTONE_SECONDS``. A tombstone is never overwritten by a reader (readers add
with SET NX), so a reader that read the old row just before the commit cannot
put it back. Hence the bound: a deactivated user's access token is refused by
every process at most ``AUTH_STATE_LOCAL_SECONDS`` after the deactivation
commits. A change that bypasses the ORM's signals (a raw ``UPDATE``, a
``QuerySet.update()``) is seen within ``AUTH_STATE_SHARED_SECONDS`` plus that.

When Redis fails, the state is read from PostgreSQL (and kept in the process),
so a Redis outage costs speed, never correctness.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import transaction

from emporium.accounts.backends import permission_names
from emporium.accounts.models import User

logger = logging.getLogger(__name__)

TOMBSTONE = "-"
TOMBSTONE_SECONDS = 10
LOCAL_MAX_USERS = 50_000  # the process's copies are dropped at once beyond this

_FIELDS = (
    "id",
    "username",
    "email",
    "first_name",
    "last_name",
    "is_active",
    "is_staff",
    "is_superuser",
)


@dataclass(frozen=True)
class UserState:
    """An account as a signed-in request sees it: who, whether active, what it may do."""

    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    is_active: bool
    is_staff: bool
    is_superuser: bool
    permissions: frozenset[str]

    def user(self) -> User:
        """An unsaved-looking but persisted ``User`` carrying this state (no query).

        Its permission cache is filled, so ``has_perm`` asks nothing either
        (``backends.RolePermissionBackend``). Fields not in the state (password,
        last_login, the time stamps) are not loaded: code that needs them reads
        the row (the profile views do).
        """
        user = User(
            id=self.id,
            username=self.username,
            email=self.email,
            first_name=self.first_name,
            last_name=self.last_name,
            is_active=self.is_active,
            is_staff=self.is_staff,
            is_superuser=self.is_superuser,
        )
        user._state.adding = False
        user._state.db = "default"
        user._perm_cache = set(self.permissions)  # type: ignore[attr-defined]
        return user


def _key(user_id: int) -> str:
    return f"auth-state:v1:{user_id}"


def _encode(state: UserState | None) -> str:
    if state is None:
        return "null"
    values: dict[str, Any] = {name: getattr(state, name) for name in _FIELDS}
    values["permissions"] = sorted(state.permissions)
    return json.dumps(values, separators=(",", ":"))


def _decode(raw: str) -> UserState | None:
    values = json.loads(raw)
    if values is None:
        return None
    values["permissions"] = frozenset(values["permissions"])
    return UserState(**values)


def user_state_from_database(user_id: int) -> UserState | None:
    """The state as PostgreSQL has it now; None for an account that does not exist."""
    row = User.objects.filter(pk=user_id).values_list(*_FIELDS).first()
    if row is None:
        return None
    values = dict(zip(_FIELDS, row, strict=True))
    permissions = (
        permission_names(user_id=user_id, is_superuser=values["is_superuser"])
        if values["is_active"]
        else set()
    )
    return UserState(**values, permissions=frozenset(permissions))


# user id -> (monotonic time until which it may be used, state)
_local: dict[int, tuple[float, UserState | None]] = {}


def _shared(user_id: int) -> UserState | None:
    cache = caches["default"]
    key = _key(user_id)
    try:
        raw = cache.get(key)
    except Exception as error:  # Redis down: PostgreSQL answers, nothing is stored
        logger.warning("authentication state not read from the cache: %s", error)
        return user_state_from_database(user_id)
    if raw is not None and raw != TOMBSTONE:
        return _decode(raw)
    state = user_state_from_database(user_id)
    if raw is None:
        try:
            # NX: a tombstone written since our read is never replaced by what we read.
            cache.add(key, _encode(state), settings.AUTH_STATE_SHARED_SECONDS)
        except Exception as error:
            logger.warning("authentication state not stored in the cache: %s", error)
    return state


def user_state(user_id: int) -> UserState | None:
    """The account's state, at most ``AUTH_STATE_LOCAL_SECONDS`` old after a committed change."""
    now = time.monotonic()
    held = _local.get(user_id)
    if held is not None and held[0] > now:
        return held[1]
    state = _shared(user_id)
    if len(_local) >= LOCAL_MAX_USERS:
        _local.clear()
    _local[user_id] = (now + settings.AUTH_STATE_LOCAL_SECONDS, state)
    return state


def _forget_now(user_ids: list[int]) -> None:
    for user_id in user_ids:
        _local.pop(user_id, None)
    if not user_ids:
        return
    try:
        caches["default"].set_many(
            {_key(user_id): TOMBSTONE for user_id in user_ids}, TOMBSTONE_SECONDS
        )
    except Exception as error:
        # The shared copy then lives out its AUTH_STATE_SHARED_SECONDS.
        logger.warning("authentication state not forgotten in the cache: %s", error)


def user_state_forget(*user_ids: int) -> None:
    """Forgets the accounts' states now and again once the current transaction commits.

    It is also forgotten at once: until the commit, readers find the tombstone
    and read the row (the old one, while uncommitted) without storing it in
    Redis, and the commit drops whatever a process kept meanwhile.
    """
    ids = [int(user_id) for user_id in user_ids]
    _forget_now(ids)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _forget_now(ids))


def local_state_reset() -> None:
    """Drops every copy this process holds (tests)."""
    _local.clear()


def _user_saved_or_deleted(sender: Any, instance: User, **kwargs: Any) -> None:
    if instance.pk is not None:
        user_state_forget(instance.pk)


def _user_relation_changed(sender: Any, instance: Any, action: str, **kwargs: Any) -> None:
    """A user's groups or direct permissions changed (from either side of the relation)."""
    if not action.startswith("post_"):
        return
    if isinstance(instance, User):
        user_state_forget(instance.pk)
    elif kwargs.get("reverse") or action == "post_clear":
        # group.user_set / permission.user_set: the users are the pk_set (all on clear: unknown).
        pk_set = kwargs.get("pk_set") or ()
        if kwargs.get("model") is User and pk_set:
            user_state_forget(*pk_set)
        elif action == "post_clear":
            _forget_everyone()


def _group_permissions_changed(sender: Any, instance: Any, action: str, **kwargs: Any) -> None:
    """A role's permissions changed: every member's state is forgotten."""
    if not action.startswith("post_"):
        return
    from django.contrib.auth.models import Group

    if isinstance(instance, Group):
        groups = [instance.pk]
    else:  # permission.group_set.add(...): the groups are the pk_set
        groups = list(kwargs.get("pk_set") or ())
        if not groups:
            _forget_everyone()
            return
    user_state_forget(
        *User.objects.filter(groups__in=groups).values_list("pk", flat=True).distinct()
    )


def _forget_everyone() -> None:
    """A change whose users are not known: the process's copies go, Redis's live out their time."""
    local_state_reset()


def _access_revoked(user_id: int) -> None:
    user_state_forget(user_id)


def signals_connect() -> None:
    """Forgets an account's state on each ORM change and announced revocation (from ``ready``)."""
    from django.contrib.auth.models import Group
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from emporium.accounts.revocation import revocation_listener_register

    uid = "emporium.accounts.access"
    post_save.connect(_user_saved_or_deleted, sender=User, dispatch_uid=f"{uid}.save")
    post_delete.connect(_user_saved_or_deleted, sender=User, dispatch_uid=f"{uid}.delete")
    m2m_changed.connect(
        _user_relation_changed, sender=User.groups.through, dispatch_uid=f"{uid}.groups"
    )
    m2m_changed.connect(
        _user_relation_changed,
        sender=User.user_permissions.through,
        dispatch_uid=f"{uid}.permissions",
    )
    m2m_changed.connect(
        _group_permissions_changed,
        sender=Group.permissions.through,
        dispatch_uid=f"{uid}.role_permissions",
    )
    revocation_listener_register(_access_revoked)
