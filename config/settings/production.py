"""The production profile: hardened settings on PostgreSQL, Redis and RabbitMQ.

There is no default secret: startup fails unless SECRET_KEY is set.
"""

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import ENV

if not ENV.secret_key or len(ENV.secret_key) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be set to at least 50 random characters.")
if not ENV.database_url:
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL in production.")
if not ENV.allowed_hosts:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the host names this deployment serves.")

DEBUG = bool(ENV.debug)
SECRET_KEY = ENV.secret_key
SIMPLE_JWT = {**SIMPLE_JWT, "SIGNING_KEY": ENV.jwt_signing_key or SECRET_KEY}  # noqa: F405

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = ENV.secure_ssl_redirect
SECURE_HSTS_SECONDS = ENV.hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"
USE_X_FORWARDED_HOST = False
