"""The production profile: hardened settings on PostgreSQL, Redis and RabbitMQ.

There is no default secret: startup fails unless SECRET_KEY is set, and on any
secret that is a published placeholder or too weak (config.settings.secret_keys).
It is the default of manage.py, config/wsgi.py, config/asgi.py and
config/celery.py, so a process that names no profile refuses to start rather
than serve with development settings.
"""

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import ENV
from config.settings.secret_keys import environment_problems


def _refuse(problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"{problem} (This is config.settings.production, the default of manage.py and the "
        "servers; for development set DJANGO_SETTINGS_MODULE=config.settings.embedded, "
        "as the Makefile's commands do.)"
    )


if not ENV.encryption_keys:
    raise _refuse("ENCRYPTION_KEYS must list at least one key (kid:base64 of 32 random bytes).")

_SECRET_PROBLEMS = environment_problems(
    ENV,
    require_secret_key=True,
)
if _SECRET_PROBLEMS:
    raise _refuse("Production refuses these secrets: " + " ".join(_SECRET_PROBLEMS))
if not ENV.database_url:
    raise _refuse("DATABASE_URL must point at PostgreSQL in production.")
if not ENV.jwt_private_keys:
    raise _refuse(
        "JWT_PRIVATE_KEYS must list at least one signing key: python -c "
        "\"from config.settings.jwt_keys import jwt_key_entry; print(jwt_key_entry('k1'))\" "
        "prints one."
    )
if not ENV.allowed_hosts:
    raise _refuse("ALLOWED_HOSTS must list the host names this deployment serves.")

DEBUG = bool(ENV.debug)
SECRET_KEY = ENV.secret_key or ""  # never empty: refused above

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = ENV.secure_ssl_redirect
# Load balancers probe the app servers, and Prometheus scrapes them, over plain
# HTTP on the private network.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = ENV.hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"
USE_X_FORWARDED_HOST = False
