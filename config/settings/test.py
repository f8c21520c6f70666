"""Test settings: the embedded profile, or the real servers when their URLs are set.

Each run has secrets of its own, random, handed to the embedded profile as if
the environment gave them (so it accepts a database server) and inherited by
the processes a test starts. Connections are not pooled unless
DATABASE_POOL_MAX_SIZE says so: concurrency tests hold one connection per
thread for a whole batch of requests, more than a process's pool would allow.
"""

import os
import secrets

from config.settings import env as _environment
from config.settings.secret_keys import INSTALLATION_SECRET_NAMES

for _name in INSTALLATION_SECRET_NAMES:
    os.environ.setdefault(_name, secrets.token_urlsafe(64))
os.environ.setdefault("DATABASE_POOL_MAX_SIZE", "0")
_environment.ENV = _environment.read_environment()

from config.settings.embedded import *  # noqa: E402, F403

# Argon2 stays first in base.py for every real profile; tests create hundreds of
# users, so they hash with MD5 to keep the suite fast.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {
    "default": {**CACHES["default"], "KEY_PREFIX": "emporium-test"},  # noqa: F405
    "catalog": {**CACHES["catalog"], "KEY_PREFIX": "emporium-test-catalog"},  # noqa: F405
}
DEBUG = False
