from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from emporium.accounts.models import TokenFamily, User
from emporium.accounts.revocation import user_access_revoked
from emporium.accounts.selectors import email_taken, username_taken
from emporium.core.errors import InvalidInput, PermissionDenied

FAMILY_CLAIM = "fam"  # the id of the sign-in a refresh (and its access) token descends from


class DuplicateAccount(InvalidInput):
    code = "duplicate_account"
    default_message = "An account with these details already exists."


def _duplicates(
    *, username: str | None, email: str | None, exclude_id: int | None
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if username is not None and username_taken(username=username, exclude_id=exclude_id):
        errors["username"] = ["A user with that username already exists."]
    if email is not None and email_taken(email=email, exclude_id=exclude_id):
        errors["email"] = ["A user with that e-mail address already exists."]
    return errors


def user_register(
    *, username: str, email: str, password: str, first_name: str = "", last_name: str = ""
) -> User:
    """Creates a customer account after the password rules and uniqueness checks pass.

    The username is stored in NFKC form; it is refused when its fold matches an
    existing account's, so no two accounts look alike or answer to one spelling.
    """
    username = User.normalize_username(username)
    email = User.objects.normalize_email(email)
    duplicates = _duplicates(username=username, email=email, exclude_id=None)
    if duplicates:
        raise DuplicateAccount(details=duplicates)
    user = User(username=username, email=email, first_name=first_name, last_name=last_name)
    try:
        validate_password(password, user=user)
    except DjangoValidationError as error:
        raise InvalidInput(
            "The password does not meet the rules.", details={"password": error.messages}
        ) from None
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        # Two registrations raced past the check; the case-insensitive unique index decided.
        raise DuplicateAccount(
            details=_duplicates(username=username, email=email, exclude_id=None)
        ) from None
    return user


def user_update_profile(
    *,
    user: User,
    email: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
) -> User:
    if email is not None:
        email = User.objects.normalize_email(email)
        duplicates = _duplicates(username=None, email=email, exclude_id=user.pk)
        if duplicates:
            raise DuplicateAccount(details=duplicates)
    changed: list[str] = []
    for field, value in (("email", email), ("first_name", first_name), ("last_name", last_name)):
        if value is not None and getattr(user, field) != value:
            setattr(user, field, value)
            changed.append(field)
    if changed:
        try:
            with transaction.atomic():
                user.save(update_fields=[*changed, "updated_at"])
        except IntegrityError:
            raise DuplicateAccount(
                details={"email": ["A user with that e-mail address already exists."]}
            ) from None
    return user


# Fields that decide what an account may do. Nobody changes these on their own account.
PRIVILEGE_FIELDS = frozenset(
    {"is_superuser", "is_staff", "is_active", "groups", "user_permissions"}
)
ADMIN_ROLE_GROUP = "admin"  # the name of the admin role's group (roles.Role.ADMIN)


class AccountChangeForbidden(PermissionDenied):
    code = "account_change_forbidden"
    default_message = "You may not make this change to this account."


def user_may_change(*, actor: User, target: User) -> bool:
    """Whether ``actor`` may change ``target`` at all: only a superuser changes a superuser.

    ``target`` is judged as stored, not as an unsaved form may have edited it.
    """
    if actor.is_superuser or target.pk is None:
        return True
    return not User.objects.filter(pk=target.pk, is_superuser=True).exists()


def user_change_authorize(
    *,
    actor: User,
    target: User,
    fields: Iterable[str],
    groups: Iterable[object] | None = None,
) -> None:
    """The one rule for changing an account, for the API and the admin site alike.

    Raises :class:`AccountChangeForbidden` (403) unless all of these hold:
    only a superuser changes a superuser account, grants or revokes
    ``is_superuser``, sets direct permissions, or adds or removes the admin
    role; nobody changes the privilege fields (``PRIVILEGE_FIELDS``) of their
    own account. ``fields`` names the fields the change writes; ``groups`` is
    the complete set of groups the account is to have, when ``groups`` is one
    of them. The stored account is read, never the instance being edited.
    """
    fields = set(fields)
    if actor.pk is not None and actor.pk == target.pk and fields & PRIVILEGE_FIELDS:
        raise AccountChangeForbidden(
            "Nobody may change the privileges or the status of their own account.",
            details={"fields": sorted(fields & PRIVILEGE_FIELDS)},
        )
    if actor.is_superuser:
        return
    if not user_may_change(actor=actor, target=target):
        raise AccountChangeForbidden("Only a superuser may change a superuser account.")
    if fields & {"is_superuser", "user_permissions"}:
        raise AccountChangeForbidden(
            "Only a superuser may grant or revoke superuser status or direct permissions.",
            details={"fields": sorted(fields & {"is_superuser", "user_permissions"})},
        )
    if "groups" in fields and groups is not None:
        had_admin = target.pk is not None and (
            User.objects.filter(pk=target.pk, groups__name=ADMIN_ROLE_GROUP).exists()
        )
        has_admin = any(getattr(group, "name", None) == ADMIN_ROLE_GROUP for group in groups)
        if had_admin != has_admin:
            raise AccountChangeForbidden("Only a superuser may assign or remove the admin role.")


def user_update_by_admin(
    *,
    actor: User,
    user: User,
    is_staff: bool | None = None,
    is_active: bool | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
) -> User:
    changed: list[str] = []
    values = (
        ("is_staff", is_staff),
        ("is_active", is_active),
        ("first_name", first_name),
        ("last_name", last_name),
    )
    for field, value in values:
        if value is not None and getattr(user, field) != value:
            changed.append(field)
    user_change_authorize(actor=actor, target=user, fields=changed)
    for field in changed:
        setattr(user, field, dict(values)[field])
    if changed:
        user.save(update_fields=[*changed, "updated_at"])
        if "is_active" in changed and not user.is_active:
            user_access_revoked(user_id=user.pk)
    return user


def user_delete(*, user: User, actor: User | None = None) -> None:
    """Deletes an account; its open WebSockets are closed (4401) once that commits.

    ``actor`` is the person deleting, when there is one: only a superuser
    deletes a superuser, and nobody deletes their own account this way.
    """
    if actor is not None:
        if actor.pk == user.pk:
            raise AccountChangeForbidden("Nobody may delete their own account here.")
        if not user_may_change(actor=actor, target=user):
            raise AccountChangeForbidden("Only a superuser may delete a superuser account.")
    user_id = user.pk
    with transaction.atomic():
        user.delete()
        user_access_revoked(user_id=user_id)


class InvalidRefreshToken(InvalidInput):
    status_code = 401
    code = "token_not_valid"
    default_message = "The refresh token is invalid or expired."


class NoActiveAccount(InvalidInput):
    status_code = 401
    code = "authentication_failed"
    default_message = "No active account found for the given token."


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


class _FamilyRefreshToken(RefreshToken):
    """A refresh token whose blacklist state is decided by its family row, not on reading.

    :func:`refresh_token_rotate` must tell a token that was already exchanged
    (a copy: revoke the family) from one that never was valid, so reading the
    token checks signature, claims and expiry only.
    """

    def check_blacklist(self) -> None:
        return None


def _read_refresh(token: str) -> _FamilyRefreshToken:
    """A signed, unexpired refresh token that belongs to a family; TokenError otherwise."""
    refresh = _FamilyRefreshToken(token)  # type: ignore[arg-type]
    family = refresh.get(FAMILY_CLAIM)
    if not isinstance(family, str) or not _is_uuid(family):
        raise TokenError("Token is invalid")
    return refresh


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(hex=value)
    except ValueError:
        return False
    return True


def _new_refresh(*, user_id: str, family: str) -> _FamilyRefreshToken:
    refresh = _FamilyRefreshToken()
    refresh[jwt_settings.USER_ID_CLAIM] = user_id
    refresh[FAMILY_CLAIM] = family
    return refresh


def token_pair_issue(*, user: User) -> TokenPair:
    """Starts a sign-in: a new token family and its first refresh and access tokens."""
    family = uuid.uuid4().hex
    refresh = _new_refresh(user_id=str(user.pk), family=family)
    with transaction.atomic():
        TokenFamily.objects.create(
            id=family, user=user, current_jti=refresh[jwt_settings.JTI_CLAIM]
        )
        refresh.outstand()
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def _family_revoke(*, family: str) -> int:
    """Revokes a family once; the number of families this call revoked (0 or 1)."""
    return TokenFamily.objects.filter(pk=family, revoked_at=None).update(
        revoked_at=timezone.now(), updated_at=timezone.now()
    )


def refresh_token_rotate(*, token: str) -> TokenPair:
    """Exchanges the newest refresh token of a family for a new pair, exactly once.

    The exchange is one conditional UPDATE on the family row (``current_jti``
    must still be this token's): of any number of requests racing with one
    token exactly one wins. A token that is not its family's newest was
    exchanged before, so someone holds a copy: the whole family is revoked and
    every token descended from that login stops working. Raises TokenError
    (401) for any refused token, NoActiveAccount for an account that is gone
    or inactive.
    """
    refresh = _read_refresh(token)
    family = str(refresh[FAMILY_CLAIM])
    user_id = str(refresh[jwt_settings.USER_ID_CLAIM])
    if not User.objects.filter(pk=user_id, is_active=True).exists():
        raise NoActiveAccount()
    successor = _new_refresh(user_id=user_id, family=family)
    with transaction.atomic():
        won = TokenFamily.objects.filter(
            pk=family,
            user_id=user_id,
            current_jti=refresh[jwt_settings.JTI_CLAIM],
            revoked_at=None,
        ).update(current_jti=successor[jwt_settings.JTI_CLAIM], updated_at=timezone.now())
        if won:
            refresh.blacklist()
            successor.outstand()
    if not won:
        if _family_revoke(family=family):
            user_access_revoked(user_id=int(user_id))
        raise TokenError("Token is blacklisted")
    return TokenPair(access=str(successor.access_token), refresh=str(successor))


PRUNE_BATCH_SIZE = 1000
PRUNE_MAX_BATCHES = 100


def token_families_prune(
    *,
    now: datetime | None = None,
    batch_size: int = PRUNE_BATCH_SIZE,
    max_batches: int = PRUNE_MAX_BATCHES,
) -> int:
    """Deletes the families none of whose refresh tokens can be exchanged any more.

    A family's ``updated_at`` is when its newest refresh token was issued (or
    the family revoked, after its last issue); once REFRESH_TOKEN_LIFETIME has
    passed since then, every token of the family has expired, revoked or not.
    Deletes at most ``batch_size`` rows per statement and ``max_batches``
    statements per call, so a backlog is worked off over several runs without
    one long transaction. Returns how many rows were deleted. Idempotent: a
    second run, or two at once, finds those rows gone and deletes nothing
    more; a family rotated meanwhile has a fresh ``updated_at`` and is kept.
    """
    cutoff = (now or timezone.now()) - jwt_settings.REFRESH_TOKEN_LIFETIME
    return _delete_in_batches(
        TokenFamily.objects.filter(updated_at__lt=cutoff),
        order_by="updated_at",
        batch_size=batch_size,
        max_batches=max_batches,
    )


def outstanding_tokens_prune(
    *,
    now: datetime | None = None,
    batch_size: int = PRUNE_BATCH_SIZE,
    max_batches: int = PRUNE_MAX_BATCHES,
) -> int:
    """Deletes simplejwt's records of refresh tokens that have expired.

    Every issued refresh token is recorded (``OutstandingToken``), and a used or
    revoked one is blacklisted (``BlacklistedToken``, deleted with it). An
    expired token is refused for its ``exp`` whatever the tables say, so its
    records only take space. Bounded and idempotent like
    :func:`token_families_prune`; returns how many rows were deleted.
    """
    return _delete_in_batches(
        OutstandingToken.objects.filter(expires_at__lt=now or timezone.now()),
        order_by="expires_at",
        batch_size=batch_size,
        max_batches=max_batches,
    )


def _delete_in_batches(
    rows: QuerySet[Any], *, order_by: str, batch_size: int, max_batches: int
) -> int:
    """At most ``batch_size`` rows per DELETE and ``max_batches`` DELETEs: no long transaction."""
    deleted = 0
    for _ in range(max_batches):
        batch = list(rows.order_by(order_by).values_list("pk", flat=True)[:batch_size])
        if not batch:
            break
        count, _ = rows.filter(pk__in=batch).delete()
        deleted += count
        if len(batch) < batch_size:
            break
    return deleted


def refresh_token_revoke(*, token: str) -> None:
    """Signs out: revokes the token's whole family, so no token of that login works again."""
    try:
        refresh = _read_refresh(token)
    except TokenError:
        raise InvalidRefreshToken() from None
    with transaction.atomic():
        revoked = _family_revoke(family=str(refresh[FAMILY_CLAIM]))
        if revoked:
            refresh.blacklist()
            user_access_revoked(user_id=int(refresh[jwt_settings.USER_ID_CLAIM]))
    if not revoked:
        raise InvalidRefreshToken()
