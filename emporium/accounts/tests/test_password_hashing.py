"""Real profiles hash passwords with Argon2; only the test profile trades that for speed."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher, get_hasher

from config.settings import base, embedded, test


def test_argon2_is_the_first_hasher_of_the_base_settings() -> None:
    assert base.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


def test_the_embedded_profile_keeps_argon2() -> None:
    assert embedded.PASSWORD_HASHERS == base.PASSWORD_HASHERS


def test_only_the_test_profile_hashes_with_md5() -> None:
    assert test.PASSWORD_HASHERS == ["django.contrib.auth.hashers.MD5PasswordHasher"]
    assert settings.PASSWORD_HASHERS == test.PASSWORD_HASHERS
    assert get_hasher().algorithm == "md5"


def test_the_argon2_library_is_installed_and_round_trips() -> None:
    hasher = Argon2PasswordHasher()

    encoded = hasher.encode("violet-anchor-meadow-42", hasher.salt())

    assert encoded.startswith("argon2$argon2id$")
    assert hasher.verify("violet-anchor-meadow-42", encoded) is True
    assert hasher.verify("violet-anchor-meadow-43", encoded) is False
