"""Test settings: the embedded profile, or the real servers when their URLs are set."""

from config.settings.embedded import *  # noqa: F403

# Argon2 stays first in base.py for every real profile; tests create hundreds of
# users, so they hash with MD5 to keep the suite fast.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {
    "default": {**CACHES["default"], "KEY_PREFIX": "emporium-test"},  # noqa: F405
    "catalog": {**CACHES["catalog"], "KEY_PREFIX": "emporium-test-catalog"},  # noqa: F405
}
DEBUG = False
