"""Settings shared by every profile. Values come from ``config.settings.env``."""

from __future__ import annotations

from datetime import timedelta

import django_stubs_ext
import environ

from config.settings.env import (
    BASE_DIR,
    ENV,
    cache_config,
    database_config,
    replica_database_configs,
)
from emporium.observability.logging import logging_settings

# Lets classes name the type arguments of Django's generic classes at run time
# (``admin.ModelAdmin[Cart]``, ``models.CharField[str, str]``), as mypy's
# disallow_any_generics asks; settings load before any model or admin module.
django_stubs_ext.monkeypatch()

EMPORIUM_PROFILE = "production" if ENV.database_url else "embedded"

SECRET_KEY = ENV.secret_key or ""
DEBUG = bool(ENV.debug)
ALLOWED_HOSTS = ENV.allowed_hosts
CSRF_TRUSTED_ORIGINS = ENV.csrf_trusted_origins

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "emporium.core",
    "emporium.accounts",
    "emporium.catalog",
    "emporium.search",
    "emporium.reviews",
    "emporium.carts",
    "emporium.wishlists",
    "emporium.orders",
    "emporium.payments",
    "emporium.integrations",
    "emporium.integrations.webhooks",
    "emporium.delivery",
    "emporium.demo",
    "emporium.realtime",
    "emporium.dashboard",
    "emporium.observability",
    "emporium.notifications",
    "emporium.notifications.channels",
]

MIDDLEWARE = [
    # The probes and the scrape, answered before Host validation and everything
    # else (emporium.observability.operational).
    "emporium.observability.operational.OperationalEndpointsMiddleware",
    # First: the request id is bound before anything logs, and the access-log
    # line (emporium.observability.requests) sees every answer, refusals included.
    "emporium.observability.requests.RequestContextMiddleware",
    # Whether this request may read from a replica; pins a client that writes
    # to the primary (emporium.core.db.replicas). Before anything reads the database.
    "emporium.core.db.replicas.ReplicaRoutingMiddleware",
    # Outermost, so the dashboard's latency figures include every other middleware.
    "emporium.dashboard.middleware.RequestTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "emporium.core.middleware.SecurityHeadersMiddleware",
    # After the header middleware so a 413 carries the security headers too,
    # and before anything that could read the body.
    "emporium.core.middleware.BodySizeLimitMiddleware",
    # TRACE, CONNECT and unknown methods: 405 before any view, session or CSRF check.
    "emporium.core.middleware.UnservedMethodMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# How many reverse proxies (nginx) sit in front of the app servers. The client's
# address is read from X-Forwarded-For only as far as these proxies vouch for it
# (emporium.core.client_ip); with 0 it is the socket's peer and the header is ignored.
TRUSTED_PROXY_COUNT = ENV.trusted_proxy_count

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_config(
        ENV.database_url,
        sqlite_path=ENV.sqlite_path,
        conn_max_age=ENV.database_conn_max_age,
        pool_min_size=ENV.database_pool_min_size,
        pool_max_size=ENV.database_pool_max_size,
        pool_timeout=ENV.database_pool_timeout,
    )
}
# Streaming replicas serve reads (emporium.core.db.replicas, docs/distributed_systems.md).
DATABASES.update(replica_database_configs(ENV.database_replica_urls, primary=DATABASES["default"]))
DATABASE_REPLICA_ALIASES = tuple(alias for alias in DATABASES if alias != "default")
DATABASE_ROUTERS = (
    ["emporium.core.db.replicas.PrimaryReplicaRouter"] if DATABASE_REPLICA_ALIASES else []
)
DATABASE_REPLICA_MAX_LAG_SECONDS = ENV.database_replica_max_lag_seconds
DATABASE_REPLICA_HEALTH_SECONDS = ENV.database_replica_health_seconds
DATABASE_REPLICA_PIN_SECONDS = ENV.database_replica_pin_seconds
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": cache_config(ENV.redis_url, key_prefix="emporium"),
    # Cached catalog responses. A Redis failure there is only a miss (the
    # catalog answers from the database), so django-redis may swallow it. The
    # default cache still raises: its users (throttles) have not chosen that.
    "catalog": cache_config(
        ENV.redis_url,
        key_prefix="emporium-catalog",
        location="emporium-catalog",
        ignore_exceptions=True,
    ),
}
# Swallowed Redis errors still leave a trace in the log.
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True

AUTH_USER_MODEL = "accounts.User"
# Roles are groups of model permissions, read in one query (emporium/accounts/roles.py).
AUTHENTICATION_BACKENDS = ["emporium.accounts.backends.RolePermissionBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Django's own limit applies to request.body and form parsing; the body-size
# middleware enforces the same figure on every request before any parsing.
EMPORIUM_MAX_REQUEST_BODY_BYTES = ENV.max_request_body_bytes
DATA_UPLOAD_MAX_MEMORY_SIZE = ENV.max_request_body_bytes

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # simplejwt's, with the verified token and the account's state kept in memory.
        "emporium.accounts.authentication.BearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's JSON parser with a bound on nesting (emporium.core.parsers.JSON_MAX_DEPTH).
    "DEFAULT_PARSER_CLASSES": ["emporium.core.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "emporium.core.pagination.KeysetPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "emporium.core.schema.ErrorDescribingAutoSchema",
    "EXCEPTION_HANDLER": "emporium.core.exception_handler.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["emporium.core.throttling.UserWriteThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "login_ip": ENV.throttle_login_ip,
        "login_account": ENV.throttle_login_account,
        "register_ip": ENV.throttle_register_ip,
        "user_writes": ENV.throttle_user_writes,
    },
    # Our throttles take the address from emporium.core.client_ip; DRF's own
    # get_ident, should anything call it, follows the same count.
    "NUM_PROXIES": ENV.trusted_proxy_count,
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# Tokens are signed with Ed25519 (EdDSA) by the first of JWT_SIGNING_KEYS and
# verified by the key their "kid" header names (emporium.accounts.tokens, the
# only token backend). Every token must carry iss, aud, exp, iat and jti.
JWT_SIGNING_KEYS = ENV.jwt_private_keys  # the embedded profile makes its own when empty
JWT_ALGORITHMS = ("EdDSA",)
JWT_AUDIENCE = ENV.jwt_audience
JWT_ISSUER = ENV.jwt_issuer
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=15),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=7),
    # Rotation and reuse detection are done by emporium.accounts.services.
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": JWT_ALGORITHMS[0],
    "SIGNING_KEY": None,  # the keys are JWT_SIGNING_KEYS; simplejwt's own backend is replaced
    "AUDIENCE": JWT_AUDIENCE,
    "ISSUER": JWT_ISSUER,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_CLAIM": "user_id",
    "AUTH_TOKEN_CLASSES": ("rest_framework_simplejwt.tokens.AccessToken",),
    "LEEWAY": 0,
}
# How long a signed-in request may use an account's state (active flag, permissions)
# read earlier: in the process, and in Redis for every process (emporium.accounts.access).
# A deactivated account's access token is refused at most AUTH_STATE_LOCAL_SECONDS
# after the change commits.
AUTH_STATE_LOCAL_SECONDS = 5
AUTH_STATE_SHARED_SECONDS = 60

SPECTACULAR_SETTINGS = {
    "TITLE": "Emporium API",
    "DESCRIPTION": (
        "Catalog, carts, wishlists, reviews, orders and payments. Every error has the "
        'shape {"error": {"code", "message", "details"}}.'
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "emporium.core.schema.add_links_from_created_objects",
    ],
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "emporium.orders.models.OrderStatus.choices",
        "PaymentStatusEnum": "emporium.payments.models.PaymentStatus.choices",
        "NotificationKindEnum": "emporium.notifications.models.NotificationKind.choices",
    },
}

# Celery: RabbitMQ when BROKER_URL is set; otherwise tasks run in-process.
CELERY_BROKER_URL = ENV.broker_url or "memory://"
CELERY_TASK_ALWAYS_EAGER = ENV.broker_url is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300  # tasks that need less say so themselves
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
CELERY_WORKER_DETECT_QUORUM_QUEUES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE = {
    "outbox-relay-sweep": {"task": "integrations.outbox_relay", "schedule": 5.0},
    "webhooks-dispatch-due": {"task": "webhooks.dispatch_due", "schedule": 5.0},
    "idempotency-keys-purge": {"task": "core.idempotency_keys_purge", "schedule": 3600.0},
    "orders-expire-unpaid": {"task": "orders.expire_unpaid", "schedule": 60.0},
    "payments-recover-stuck": {"task": "payments.recover_stuck", "schedule": 300.0},
    "token-families-prune": {"task": "accounts.token_families_prune", "schedule": 3600.0},
    "outstanding-tokens-prune": {"task": "accounts.outstanding_tokens_prune", "schedule": 3600.0},
    "notifications-digests-release": {"task": "notifications.digests_release", "schedule": 60.0},
    "notifications-prune": {"task": "notifications.prune", "schedule": 3600.0},
    "notifications-broadcasts-resume": {
        "task": "notifications.broadcasts_resume",
        "schedule": 60.0,
    },
    "notification-deliveries-sweep": {
        "task": "notification_channels.deliveries_sweep",
        "schedule": 15.0,
    },
    "notification-deliveries-prune": {
        "task": "notification_channels.deliveries_prune",
        "schedule": 3600.0,
    },
    "catalog-imports-resume": {"task": "catalog.product_imports_resume", "schedule": 60.0},
    "telemetry-partitions-maintain": {
        "task": "delivery.telemetry_partitions_maintain",
        "schedule": 3600.0,
    },
}

# Domain events: published to RabbitMQ by the relay in production; in the
# embedded profile the relay runs in-process right after each commit.
EMPORIUM_EVENTS_BROKER_URL = ENV.broker_url
EMPORIUM_RELAY_INLINE = ENV.broker_url is None

EMPORIUM_ORDER_PAYMENT_TIMEOUT_SECONDS = ENV.order_payment_timeout_seconds
EMPORIUM_LOW_STOCK_THRESHOLD = ENV.low_stock_threshold

# Payments: the provider (the repo's simulator unless configured), retries and breaker.
PAYMENT_PROVIDER_URL = ENV.payment_provider_url
PAYMENT_PROVIDER_API_KEY = ENV.payment_provider_api_key
PAYMENT_PROVIDER_TIMEOUT_SECONDS = 5.0
PAYMENT_CALLBACK_URL = ENV.payment_callback_url
PAYMENT_WEBHOOK_SECRET = ENV.payment_webhook_secret
PAYMENT_WEBHOOK_TOLERANCE_SECONDS = 300
PAYMENT_METHODS = ["card", "paypal", "bank_transfer"]
PAYMENT_CURRENCY = "EUR"
PAYMENT_MAX_ATTEMPTS = 6
PAYMENT_RETRY_BASE_SECONDS = 2.0
PAYMENT_RETRY_CAP_SECONDS = 120.0
PAYMENT_RECONCILE_DELAY_SECONDS = 60
PAYMENT_STUCK_AFTER_SECONDS = 900
PAYMENT_RECONCILE_MAX_ATTEMPTS = 20
PAYMENT_BREAKER_FAIL_MAX = 5
PAYMENT_BREAKER_RESET_SECONDS = 30
EMPORIUM_BREAKER_REDIS_URL = ENV.redis_url

# Outgoing webhooks (emporium.integrations.webhooks, docs/api.md). Targets must be
# https and resolve only to public addresses; the embedded profile allows others.
WEBHOOKS_REQUIRE_HTTPS = True
WEBHOOKS_ALLOW_PRIVATE_TARGETS = False
WEBHOOKS_TIMEOUT_SECONDS = 10.0
WEBHOOKS_CONNECT_TIMEOUT_SECONDS = 3.0
# Retries: exponential backoff with jitter from BASE, capped; Retry-After is honoured up to its cap.
WEBHOOKS_MAX_ATTEMPTS = 12
WEBHOOKS_RETRY_BASE_SECONDS = 10.0
WEBHOOKS_RETRY_CAP_SECONDS = 3600.0
WEBHOOKS_RETRY_AFTER_CAP_SECONDS = 3600.0
# A circuit breaker per endpoint (in Redis with EMPORIUM_BREAKER_REDIS_URL).
WEBHOOKS_BREAKER_FAIL_MAX = 5
WEBHOOKS_BREAKER_RESET_SECONDS = 60
# An endpoint failing this long is disabled and staff are e-mailed.
WEBHOOKS_DISABLE_AFTER_SECONDS = 3 * 24 * 3600
WEBHOOKS_ROTATION_MAX_GRACE_SECONDS = 7 * 24 * 3600

# Delivery telemetry: batch limit, clock tolerance, raw-point retention (whole UTC
# days, dropped as partitions) and how many daily partitions exist ahead of time.
EMPORIUM_TELEMETRY_MAX_POINTS = 10_000
EMPORIUM_TELEMETRY_MAX_FUTURE_SECONDS = 300
EMPORIUM_TELEMETRY_RETENTION_DAYS = 30
EMPORIUM_TELEMETRY_PARTITIONS_AHEAD_DAYS = 3
EMPORIUM_TELEMETRY_ROLLUP_RETENTION_DAYS = 400

# Real time (docs/realtime.md): events cross processes on Redis pub/sub when
# REDIS_URL is set, else stay in the one process of the embedded profile. Other
# apps push with get_channel_layer().group_send(group, {"type": "dashboard.event",
# "event": {...}}); the layer hands that to the same fan-out.
CHANNEL_LAYERS = {"default": {"BACKEND": "emporium.realtime.layer.HubChannelLayer"}}
EMPORIUM_REALTIME_REDIS_URL = ENV.redis_url
# Events an order or notification socket may have waiting before it is closed
# with 4408 (the client then resyncs over REST); dashboards drop the oldest instead.
EMPORIUM_REALTIME_BUFFER_EVENTS = 256
# A shipment socket gets at most one position per this many seconds (latest wins).
EMPORIUM_REALTIME_POSITION_INTERVAL_SECONDS = 0.5
# How long a socket may stay open without presenting a token (then 4401).
EMPORIUM_REALTIME_AUTH_TIMEOUT_SECONDS = 10.0
# Telemetry positions are coalesced per device and published this often per process.
EMPORIUM_REALTIME_POSITION_FLUSH_SECONDS = 1.0

# Sensitive columns are sealed with AES-256-GCM (emporium.core.encryption, docs/security.md):
# (key id, key) pairs, the first seals, all open. The embedded profile falls back
# to a key of its own under var/; production refuses to start without keys.
EMPORIUM_ENCRYPTION_KEYS = ENV.encryption_keys

IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 3600
IDEMPOTENCY_LOCK_SECONDS = 60

# Catalog reads (docs/caching.md). Entries are invalidated exactly on every
# write; FRESH_SECONDS only bounds how long one can outlive an invalidation
# that Redis did not receive. MAX_AGE and STALE_WHILE_REVALIDATE go to clients
# and to nginx in Cache-Control.
CATALOG_CACHE_ALIAS = "catalog"
CATALOG_CACHE_ENABLED = ENV.catalog_cache_enabled
# The WSGI entry point answers anonymous product reads in front of Django's
# handler (emporium.core.gateway, docs/adr/0020).
LEAN_GATEWAY_ENABLED = ENV.lean_gateway_enabled
# Hot reads run as server-side prepared statements (emporium.core.db.prepared).
DATABASE_PREPARED_STATEMENTS = ENV.database_prepared_statements
# Prometheus metrics (emporium.core.metrics): off removes the instrumentation.
# GET /metrics answers clients in METRICS_ALLOWED_NETWORKS or carrying the
# bearer METRICS_TOKEN, and is a 404 to anyone else.
METRICS_ENABLED = ENV.metrics_enabled
METRICS_ALLOWED_NETWORKS = ENV.metrics_allowed_networks
METRICS_TOKEN = ENV.metrics_token
# /readyz answers 503 when one of these is lost (emporium.observability.health).
READINESS_REQUIRED = ENV.readiness_required
CATALOG_CACHE_MAX_AGE = ENV.catalog_cache_max_age
CATALOG_CACHE_STALE_WHILE_REVALIDATE = ENV.catalog_cache_stale_while_revalidate
CATALOG_CACHE_FRESH_SECONDS = ENV.catalog_cache_fresh_seconds
CATALOG_CACHE_STALE_SECONDS = 30
CATALOG_CACHE_LOCK_SECONDS = 5
CATALOG_CACHE_WAIT_SECONDS = 0.5
CATALOG_CACHE_FAILURE_BACKOFF_SECONDS = 2
# The suggestions follow the words of product names (catalog.vocabulary) up to
# this late: after a product is created, renamed or deleted, each cached
# suggestion is refreshed at its own moment within this window, so the
# hundreds of prefixes one change invalidates are not recomputed at once.
CATALOG_CACHE_VOCABULARY_LAG_SECONDS = ENV.catalog_cache_vocabulary_lag_seconds

# Bulk catalog import (docs/api.md, "Bulk catalog import"). The upload path has its
# own body limit instead of MAX_REQUEST_BODY_BYTES, and streams to CATALOG_IMPORT_DIR.
CATALOG_IMPORT_DIR = ENV.catalog_import_dir
CATALOG_IMPORT_MAX_BYTES = ENV.catalog_import_max_bytes
CATALOG_IMPORT_CHUNK_ROWS = ENV.catalog_import_chunk_rows
CATALOG_IMPORT_MAX_STORED_ERRORS = 100_000
# A task applies chunks for this long, then queues its continuation.
CATALOG_IMPORT_TASK_SECONDS = 60
# An unfinished import that has not moved for this long is queued again (beat).
CATALOG_IMPORT_STALLED_SECONDS = 300
EMPORIUM_STREAMED_UPLOAD_LIMITS = {"/api/products/imports/": CATALOG_IMPORT_MAX_BYTES}

# E-mail: SMTP from EMAIL_URL (smtp://user:pass@host:port, smtp+tls://... for STARTTLS) in
# production; files under var/mail in the embedded profile.
if ENV.email_url:
    _email = environ.Env.email_url_config(ENV.email_url)
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
    EMAIL_PORT = _email.get("EMAIL_PORT", 25)
    EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = BASE_DIR / "var" / "mail"
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = ENV.default_from_email

# Notification channels (emporium.notifications.channels, docs/notifications.md): the SMTP
# endpoints notification e-mail goes through, in order (EMAIL_URL, then EMAIL_FAILOVER_URL);
# none in the embedded profile, whose e-mail goes to the backend above (files).
NOTIFICATION_EMAIL_ENDPOINTS = [
    {
        "HOST": _endpoint.get("EMAIL_HOST", "localhost"),
        "PORT": _endpoint.get("EMAIL_PORT", 25),
        "USER": _endpoint.get("EMAIL_HOST_USER", ""),
        "PASSWORD": _endpoint.get("EMAIL_HOST_PASSWORD", ""),
        "USE_TLS": _endpoint.get("EMAIL_USE_TLS", False),
        "USE_SSL": _endpoint.get("EMAIL_USE_SSL", False),
    }
    for _url in (ENV.email_url, ENV.email_failover_url)
    if _url
    for _endpoint in [environ.Env.email_url_config(_url)]
    if _endpoint["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
]
# An endpoint that failed is tried last for this long.
NOTIFICATION_EMAIL_ENDPOINT_COOLDOWN_SECONDS = 30
# Push: an FCM HTTP v1 endpoint (the simulator in simulators/push in development);
# unset, push messages are appended to NOTIFICATION_PUSH_FILE_PATH.
PUSH_PROVIDER_URL = ENV.push_provider_url
PUSH_PROJECT_ID = ENV.push_project_id
PUSH_PROVIDER_ACCESS_TOKEN = ENV.push_provider_access_token
PUSH_PROVIDER_TIMEOUT_SECONDS = 10.0
NOTIFICATION_PUSH_FILE_PATH = BASE_DIR / "var" / "push" / "messages.jsonl"
# Per channel: rows per batch task, the queue, the provider's rate (messages a second,
# shared by every worker; 0 is unlimited) and requests in flight per worker (push).
NOTIFICATION_CHANNELS = {
    "email": {"QUEUE": "email", "BATCH_SIZE": 200, "RATE_PER_SECOND": ENV.notification_email_rate},
    "push": {
        "QUEUE": "push",
        "BATCH_SIZE": 500,
        "RATE_PER_SECOND": ENV.notification_push_rate,
        "CONCURRENCY": 32,
    },
}
NOTIFICATION_CHANNELS_MAX_ATTEMPTS = 8
NOTIFICATION_CHANNELS_RETRY_BASE_SECONDS = 2.0
NOTIFICATION_CHANNELS_RETRY_CAP_SECONDS = 900.0
# A claimed row whose worker died is sent again once this lease has run out.
NOTIFICATION_CHANNELS_CLAIM_SECONDS = 120
# The sweep leaves a due row this long to its own retry task before queueing it.
NOTIFICATION_CHANNELS_SWEEP_GRACE_SECONDS = 30
# Sent and skipped deliveries are deleted this long after they finished (dead letters stay).
NOTIFICATION_CHANNELS_RETENTION_DAYS = 30

# The inbox and broadcasts (emporium.notifications, docs/notifications.md). A user gets at
# most THROTTLE_MAX non-critical notifications per channel per THROTTLE_WINDOW; the rest
# wait for one digest at the end of the window. Read notifications older than
# READ_RETENTION_DAYS are pruned; the unread count stops counting at UNREAD_COUNT_CAP.
EMPORIUM_NOTIFICATIONS_THROTTLE_MAX = 10
EMPORIUM_NOTIFICATIONS_THROTTLE_WINDOW_SECONDS = 3600
EMPORIUM_NOTIFICATIONS_READ_RETENTION_DAYS = 90
EMPORIUM_NOTIFICATIONS_UNREAD_COUNT_CAP = 999
EMPORIUM_NOTIFICATIONS_BODY_MAX = 4000
# Users per broadcast batch (one INSERT ... SELECT, one task), and how long a running
# broadcast may go without a finished batch before its batches are queued again.
EMPORIUM_NOTIFICATIONS_BROADCAST_BATCH = 10_000
EMPORIUM_NOTIFICATIONS_BROADCAST_STALL_SECONDS = 120

# One format for every line of a process, structlog's and the standard library's
# (emporium.observability.logging): JSON lines in production, readable lines embedded.
LOG_FORMAT = ENV.log_format
LOGGING_CONFIG = "emporium.observability.logging.logging_configure"
LOGGING = logging_settings(log_format=LOG_FORMAT, level=ENV.log_level, access_log=ENV.access_log)
# OpenTelemetry traces (emporium.observability.tracing): on only when an endpoint is set.
OTEL_EXPORTER_OTLP_ENDPOINT = ENV.otel_exporter_otlp_endpoint
