from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from emporium.accounts.models import User
from emporium.accounts.selectors import email_taken, username_taken
from emporium.core.errors import InvalidInput
from emporium.realtime import user_sockets_revoke


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


def refresh_token_revoke(*, token: str) -> None:
    """Blacklists a refresh token so it can never be exchanged again."""
    try:
        refresh = RefreshToken(token)  # type: ignore[arg-type]
        refresh.blacklist()
    except TokenError:
        raise InvalidRefreshToken() from None
    user_sockets_revoke(user_id=int(refresh[jwt_settings.USER_ID_CLAIM]))
