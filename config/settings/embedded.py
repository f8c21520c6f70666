"""The embedded profile: one process, no services. Only for development and demos."""

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import BASE_DIR, ENV
from config.settings.env import encryption_keys_local
from config.settings.jwt_keys import jwt_keys_local
from config.settings.secret_keys import environment_problems, installation_secrets

# DEBUG stays off unless asked for, so even the demo answers every error in the
# API's JSON shape; `make run` serves static files with runserver --insecure.
DEBUG = bool(ENV.debug)
# Never a published key (config.settings.secret_keys). On SQLite a key the
# environment does not give is generated once for this installation and kept in
# SECRETS_PATH (mode 0600). A database server holds real data: there the
# environment must give SECRET_KEY, and every key it gives must be a real one.
_ON_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"  # noqa: F405
_SECRET_PROBLEMS = environment_problems(
    ENV,
    require_secret_key=not _ON_SQLITE,
)
if _SECRET_PROBLEMS:
    raise ImproperlyConfigured(
        "The embedded profile refuses these secrets"
        + ("" if _ON_SQLITE else " on a database server")
        + ": "
        + " ".join(_SECRET_PROBLEMS)
    )
_INSTALLATION = (
    installation_secrets(ENV.secrets_path)
    if _ON_SQLITE and not (ENV.secret_key and ENV.payment_webhook_secret)
    else {}
)
SECRET_KEY = ENV.secret_key or _INSTALLATION["SECRET_KEY"]
# Never a published key: without JWT_PRIVATE_KEYS this installation makes its own.
JWT_SIGNING_KEYS = ENV.jwt_private_keys or jwt_keys_local(BASE_DIR / "var" / "jwt.keys")
ALLOWED_HOSTS = ENV.allowed_hosts or ["127.0.0.1", "localhost", "[::1]", "testserver"]
# `make run` hands this installation's secret to the payment simulator too.
PAYMENT_WEBHOOK_SECRET = ENV.payment_webhook_secret or _INSTALLATION.get("PAYMENT_WEBHOOK_SECRET")
# Never a published key: without ENCRYPTION_KEYS this installation makes its own.
EMPORIUM_ENCRYPTION_KEYS = ENV.encryption_keys or encryption_keys_local(
    BASE_DIR / "var" / "encryption.keys"
)
# Webhooks may reach a receiver on this machine or the local network, over plain http.
WEBHOOKS_REQUIRE_HTTPS = False
WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
