"""The embedded profile: one process, no services. Only for development and demos."""

from config.settings.base import *  # noqa: F403
from config.settings.base import ENV

# DEBUG stays off unless asked for, so even the demo answers every error in the
# API's JSON shape; `make run` serves static files with runserver --insecure.
DEBUG = bool(ENV.debug)
# A fixed key is acceptable only here: the embedded profile never faces the internet.
SECRET_KEY = (
    ENV.secret_key or "embedded-profile-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
)
SIMPLE_JWT = {**SIMPLE_JWT, "SIGNING_KEY": ENV.jwt_signing_key or SECRET_KEY}  # noqa: F405
ALLOWED_HOSTS = ENV.allowed_hosts or ["127.0.0.1", "localhost", "[::1]", "testserver"]
# The simulator's sandbox secret, so `make run` works with no configuration.
PAYMENT_WEBHOOK_SECRET = ENV.payment_webhook_secret or "simulator-webhook-secret"
