from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from emporium.accounts.models import TokenFamily, User
from emporium.accounts.selectors import email_taken, username_taken
from emporium.core.errors import InvalidInput
from emporium.realtime import user_sockets_revoke

FAMILY_CLAIM = "fam"  # the id of the sign-in a refresh (and its access) token descends from


class DuplicateAccount(InvalidInput):
    code = "duplicate_account"
    default_message = "An account with these details already exists."


def _duplicates(*, username: str | None, email: str | None, exclude_id: int | None) -> dict:
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


def user_update_by_admin(
    *,
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
            setattr(user, field, value)
            changed.append(field)
    if changed:
        user.save(update_fields=[*changed, "updated_at"])
        if "is_active" in changed and not user.is_active:
            user_sockets_revoke(user_id=user.pk)
    return user


def user_delete(*, user: User) -> None:
    """Deletes an account; its open WebSockets are closed (4401) once that commits."""
    user_id = user.pk
    with transaction.atomic():
        user.delete()
        user_sockets_revoke(user_id=user_id)


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
            user_sockets_revoke(user_id=int(user_id))
        raise TokenError("Token is blacklisted")
    return TokenPair(access=str(successor.access_token), refresh=str(successor))


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
            user_sockets_revoke(user_id=int(refresh[jwt_settings.USER_ID_CLAIM]))
    if not revoked:
        raise InvalidRefreshToken()
