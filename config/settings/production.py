"""The production profile: hardened settings on PostgreSQL, Redis and RabbitMQ.

There is no default secret: startup fails unless SECRET_KEY is set, and on any
secret that is a published placeholder or too weak (config.settings.secret_keys).
"""

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import ENV
from config.settings.secret_keys import environment_problems

if not ENV.encryption_keys:
    raise ImproperlyConfigured(
        "ENCRYPTION_KEYS must list at least one key (kid:base64 of 32 random bytes)."
    )

_SECRET_PROBLEMS = environment_problems(
    ENV,
    require_secret_key=True,
)
if _SECRET_PROBLEMS:
    raise ImproperlyConfigured("Production refuses these secrets: " + " ".join(_SECRET_PROBLEMS))
if not ENV.database_url:
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL in production.")
if not ENV.jwt_private_keys:
    raise ImproperlyConfigured(
        "JWT_PRIVATE_KEYS must list at least one signing key (manage.py jwt_key_generate)."
    )
if not ENV.allowed_hosts:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the host names this deployment serves.")

DEBUG = bool(ENV.debug)
SECRET_KEY = ENV.secret_key or ""  # never empty: refused above

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = ENV.secure_ssl_redirect
# Load balancers probe the app servers over plain HTTP on the private network.
SECURE_REDIRECT_EXEMPT = [r"^health/"]
SECURE_HSTS_SECONDS = ENV.hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"
USE_X_FORWARDED_HOST = False
