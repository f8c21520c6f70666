"""Account services and selectors, including the races the unique indexes decide."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from emporium.accounts import selectors, services
from emporium.accounts.models import User
from emporium.core.errors import InvalidInput
from emporium.core.tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "violet-anchor-meadow-42"


def blind_first_check(
    real: Callable[..., bool], calls: list[dict[str, Any]]
) -> Callable[..., bool]:
    """A uniqueness check that misses the first time, as if a twin request raced past it."""

    def check(**kwargs: Any) -> bool:
        calls.append(kwargs)
        if len(calls) == 1:
            return False
        return real(**kwargs)

    return check


def test_user_register_stores_a_hashed_password_and_normalised_email() -> None:
    user = services.user_register(
        username="alice", email="Alice@EXAMPLE.com", password=STRONG_PASSWORD
    )

    stored = User.objects.get(pk=user.pk)
    assert stored.username == "alice"
    assert stored.email == "Alice@example.com"
    assert (stored.first_name, stored.last_name) == ("", "")
    assert stored.password != STRONG_PASSWORD
    assert stored.check_password(STRONG_PASSWORD) is True
    assert (stored.is_staff, stored.is_superuser, stored.is_active) == (False, False, True)


def test_user_register_race_on_username_is_a_duplicate_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    existing = UserFactory(username="alice", email="alice@example.com")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        services, "username_taken", blind_first_check(selectors.username_taken, calls)
    )

    with pytest.raises(services.DuplicateAccount) as caught:
        services.user_register(
            username="ALICE", email="other@example.com", password=STRONG_PASSWORD
        )

    assert caught.value.details == {"username": ["A user with that username already exists."]}
    assert caught.value.status_code == 400
    assert caught.value.code == "duplicate_account"
    assert len(calls) == 2  # the index caught it and the check ran again for the details
    assert list(User.objects.values_list("pk", flat=True)) == [existing.pk]


def test_user_register_race_on_email_is_a_duplicate_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    existing = UserFactory(username="alice", email="alice@example.com")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(services, "email_taken", blind_first_check(selectors.email_taken, calls))

    with pytest.raises(services.DuplicateAccount) as caught:
        services.user_register(username="bob", email="ALICE@example.com", password=STRONG_PASSWORD)

    assert caught.value.details == {"email": ["A user with that e-mail address already exists."]}
    assert list(User.objects.values_list("pk", flat=True)) == [existing.pk]


def test_the_case_insensitive_unique_indexes_hold_without_the_checks() -> None:
    UserFactory(username="alice", email="alice@example.com")

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="ALICE", email="someone@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="someone", email="Alice@Example.com")

    assert User.objects.count() == 1


def test_user_register_rejects_a_weak_password_before_writing() -> None:
    with pytest.raises(InvalidInput) as caught:
        services.user_register(username="alice", email="alice@example.com", password="password")

    assert caught.value.details == {"password": ["This password is too common."]}
    assert caught.value.message == "The password does not meet the rules."
    assert User.objects.count() == 0


def test_user_update_profile_race_on_email_is_a_duplicate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    UserFactory(email="taken@example.com")
    user = UserFactory(email="mine@example.com", first_name="Alice")
    monkeypatch.setattr(services, "email_taken", lambda **kwargs: False)

    with pytest.raises(services.DuplicateAccount) as caught:
        services.user_update_profile(user=user, email="TAKEN@example.com", first_name="Changed")

    assert caught.value.details == {"email": ["A user with that e-mail address already exists."]}
    stored = User.objects.get(pk=user.pk)
    assert (stored.email, stored.first_name) == ("mine@example.com", "Alice")


def test_user_update_profile_without_changes_does_not_write() -> None:
    user = UserFactory(email="mine@example.com", first_name="Alice", last_name="L")
    before = User.objects.get(pk=user.pk).updated_at

    result = services.user_update_profile(
        user=user, email="mine@example.com", first_name="Alice", last_name=None
    )

    assert result is user
    assert User.objects.get(pk=user.pk).updated_at == before


def test_user_update_by_admin_changes_only_given_fields() -> None:
    user = UserFactory(first_name="Alice", last_name="Liddell")

    services.user_update_by_admin(actor=StaffFactory(), user=user, is_staff=True)

    stored = User.objects.get(pk=user.pk)
    assert (stored.is_staff, stored.is_active, stored.first_name, stored.last_name) == (
        True,
        True,
        "Alice",
        "Liddell",
    )


def test_user_update_by_admin_without_changes_does_not_write() -> None:
    user = UserFactory(is_staff=False)
    before = User.objects.get(pk=user.pk).updated_at

    services.user_update_by_admin(actor=StaffFactory(), user=user, is_staff=False, is_active=True)

    assert User.objects.get(pk=user.pk).updated_at == before


def test_refresh_token_revoke_rejects_garbage() -> None:
    with pytest.raises(services.InvalidRefreshToken) as caught:
        services.refresh_token_revoke(token="garbage")

    assert caught.value.status_code == 401
    assert caught.value.code == "token_not_valid"


def test_username_and_email_taken_ignore_case_and_can_exclude_one_user() -> None:
    user = UserFactory(username="alice", email="alice@example.com")

    assert selectors.username_taken(username="ALICE") is True
    assert selectors.username_taken(username="alicia") is False
    assert selectors.username_taken(username="Alice", exclude_id=user.pk) is False
    assert selectors.email_taken(email="ALICE@example.COM") is True
    assert selectors.email_taken(email="bob@example.com") is False
    assert selectors.email_taken(email="alice@example.com", exclude_id=user.pk) is False


def test_user_list_is_ordered_by_id() -> None:
    users = [UserFactory(username=name) for name in ("zed", "amy", "mia")]

    assert list(selectors.user_list()) == users


def test_user_str_is_the_username() -> None:
    assert str(UserFactory.build(username="alice")) == "alice"
