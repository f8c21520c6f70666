"""Every value the settings read from the environment, parsed in this one place.

The profile follows from what is configured: without ``DATABASE_URL`` the
project runs embedded (SQLite in WAL mode), without ``REDIS_URL`` it caches in
process, and without ``BROKER_URL`` Celery tasks run in-process.

A ``.env`` file in the project root is read only when the process environment
asks for it with ``DJANGO_READ_DOT_ENV_FILE=true``: a file left on a server (or
copied from a laptop) never changes a process that did not ask. The process
environment wins over the file.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.settings.jwt_keys import JwtKey, jwt_keys_parse
from config.settings.keyring import installation_file, key_entries_parse
from config.settings.secret_keys import RETIRED_VARIABLES

BASE_DIR = Path(__file__).resolve().parent.parent.parent

_env = environ.Env()


def dot_env_read(*, base_dir: Path) -> Path | None:
    """Loads ``base_dir/.env`` into the process environment if asked to; the file read, or None.

    Asked means ``DJANGO_READ_DOT_ENV_FILE`` is true in the process environment
    itself (a value in the file cannot ask for the file). Variables already set
    keep their values.
    """
    if not _env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
        return None
    path = base_dir / ".env"
    if not path.is_file():
        raise ImproperlyConfigured(f"DJANGO_READ_DOT_ENV_FILE is set but {path} does not exist.")
    environ.Env.read_env(str(path), overwrite=False)
    return path


dot_env_read(base_dir=BASE_DIR)


@dataclass(frozen=True)
class Environment:
    secret_key: str | None
    retired_variables: tuple[str, ...]  # set, though nothing reads them any more
    jwt_private_keys: tuple[JwtKey, ...]
    jwt_audience: str
    jwt_issuer: str
    debug: bool | None
    allowed_hosts: list[str]
    csrf_trusted_origins: list[str]
    database_url: str | None
    database_conn_max_age: int
    database_pool_min_size: int
    database_pool_max_size: int
    database_pool_timeout: float
    database_replica_urls: tuple[str, ...]
    database_replica_max_lag_seconds: float
    database_replica_health_seconds: float
    database_replica_pin_seconds: float
    secrets_path: Path
    http_header_timeout_seconds: float
    http_keep_alive_timeout_seconds: int
    redis_url: str | None
    broker_url: str | None
    sqlite_path: Path
    log_level: str
    log_format: str
    access_log: bool
    otel_exporter_otlp_endpoint: str | None
    max_request_body_bytes: int
    throttle_login_ip: str
    throttle_login_account: str
    throttle_register_ip: str
    throttle_user_writes: str
    secure_ssl_redirect: bool
    order_payment_timeout_seconds: int
    low_stock_threshold: int
    payment_provider_url: str
    payment_provider_api_key: str | None
    payment_webhook_secret: str | None
    payment_callback_url: str | None
    email_url: str | None
    email_failover_url: str | None
    default_from_email: str
    push_provider_url: str | None
    push_project_id: str
    push_provider_access_token: str | None
    notification_email_rate: int
    notification_push_rate: int
    hsts_seconds: int
    trusted_proxy_count: int
    celery_delivery_limit: int
    catalog_cache_max_age: int
    catalog_cache_stale_while_revalidate: int
    catalog_cache_fresh_seconds: int
    catalog_cache_vocabulary_lag_seconds: float
    catalog_cache_enabled: bool
    catalog_import_dir: Path
    catalog_import_max_bytes: int
    catalog_import_chunk_rows: int
    lean_gateway_enabled: bool
    database_prepared_statements: bool
    metrics_enabled: bool
    metrics_allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    metrics_token: str | None
    readiness_required: frozenset[str]
    metrics_port: int | None
    metrics_bind: str
    prometheus_multiproc_dir: Path | None
    encryption_keys: tuple[tuple[str, bytes], ...]


def read_environment() -> Environment:
    return Environment(
        secret_key=_env.str("SECRET_KEY", default=None),
        retired_variables=tuple(name for name in RETIRED_VARIABLES if _env.str(name, default="")),
        jwt_private_keys=jwt_keys_parse(_env.str("JWT_PRIVATE_KEYS", default="")),
        jwt_audience=_env.str("JWT_AUDIENCE", default="emporium-api"),
        jwt_issuer=_env.str("JWT_ISSUER", default="emporium"),
        debug=_env.bool("DEBUG", default=None),
        allowed_hosts=_env.list("ALLOWED_HOSTS", default=[]),
        csrf_trusted_origins=_env.list("CSRF_TRUSTED_ORIGINS", default=[]),
        database_url=_env.str("DATABASE_URL", default=None) or None,
        database_conn_max_age=_env.int("DATABASE_CONN_MAX_AGE", default=600),
        # Connections each process may hold (psycopg's pool); 0 turns the pool off.
        database_pool_min_size=_env.int("DATABASE_POOL_MIN_SIZE", default=1),
        database_pool_max_size=_env.int("DATABASE_POOL_MAX_SIZE", default=8),
        # Seconds a request waits for a pooled connection before it is answered 503.
        database_pool_timeout=_env.float("DATABASE_POOL_TIMEOUT", default=5.0),
        # Streaming replicas that serve reads (emporium.core.db.replicas), comma-separated URLs.
        database_replica_urls=tuple(
            url.strip() for url in _env.list("DATABASE_REPLICA_URLS", default=[]) if url.strip()
        ),
        # A replica further behind than this is skipped; its probe runs this often.
        database_replica_max_lag_seconds=_env.float(
            "DATABASE_REPLICA_MAX_LAG_SECONDS", default=2.0
        ),
        database_replica_health_seconds=_env.float("DATABASE_REPLICA_HEALTH_SECONDS", default=1.0),
        # A client that wrote reads from the primary this long (read-your-writes);
        # unset, the lag bound plus two probe intervals.
        database_replica_pin_seconds=replica_pin_seconds(
            pin=_env.float("DATABASE_REPLICA_PIN_SECONDS", default=None),
            max_lag=_env.float("DATABASE_REPLICA_MAX_LAG_SECONDS", default=2.0),
            health=_env.float("DATABASE_REPLICA_HEALTH_SECONDS", default=1.0),
        ),
        # The embedded profile's generated keys (config.settings.secret_keys).
        secrets_path=Path(_env.str("SECRETS_PATH", default=str(BASE_DIR / "var" / "secrets.json"))),
        # Read by the app servers' launcher (emporium.core.servers), not by Django.
        http_header_timeout_seconds=_env.float("HTTP_HEADER_TIMEOUT_SECONDS", default=10.0),
        http_keep_alive_timeout_seconds=_env.int("HTTP_KEEP_ALIVE_TIMEOUT_SECONDS", default=5),
        redis_url=_env.str("REDIS_URL", default=None) or None,
        broker_url=_env.str("BROKER_URL", default=None) or None,
        sqlite_path=Path(
            _env.str("SQLITE_PATH", default=str(BASE_DIR / "var" / "emporium.sqlite3"))
        ),
        log_level=_env.str("LOG_LEVEL", default="INFO"),
        # json or console: unset, JSON lines where a database server is configured
        # (production), readable lines in the embedded profile.
        log_format=_env.str(
            "LOG_FORMAT", default="json" if _env.str("DATABASE_URL", default="") else "console"
        ),
        # One line per request on the emporium.access logger: on where a database
        # server is configured; off in the embedded profile, whose simulated couriers
        # send several requests a second that would bury everything else.
        access_log=_env.bool("ACCESS_LOG", default=bool(_env.str("DATABASE_URL", default=""))),
        # Traces go over OTLP/HTTP to this collector; unset, tracing is off and costs nothing.
        otel_exporter_otlp_endpoint=_env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default=None) or None,
        max_request_body_bytes=_env.int("MAX_REQUEST_BODY_BYTES", default=2 * 1024 * 1024),
        throttle_login_ip=_env.str("THROTTLE_LOGIN_IP", default="30/min"),
        throttle_login_account=_env.str("THROTTLE_LOGIN_ACCOUNT", default="5/min"),
        throttle_register_ip=_env.str("THROTTLE_REGISTER_IP", default="20/hour"),
        throttle_user_writes=_env.str("THROTTLE_USER_WRITES", default="600/min"),
        secure_ssl_redirect=_env.bool("SECURE_SSL_REDIRECT", default=True),
        hsts_seconds=_env.int("SECURE_HSTS_SECONDS", default=31536000),
        trusted_proxy_count=_env.int("TRUSTED_PROXY_COUNT", default=0),
        celery_delivery_limit=_env.int("CELERY_DELIVERY_LIMIT", default=5),
        catalog_cache_max_age=_env.int("CATALOG_CACHE_MAX_AGE", default=5),
        catalog_cache_stale_while_revalidate=_env.int(
            "CATALOG_CACHE_STALE_WHILE_REVALIDATE", default=30
        ),
        catalog_cache_fresh_seconds=_env.int("CATALOG_CACHE_FRESH_SECONDS", default=60),
        catalog_cache_vocabulary_lag_seconds=_env.float(
            "CATALOG_CACHE_VOCABULARY_LAG_SECONDS", default=10.0
        ),
        # Off only for benchmarks of the uncached read path.
        catalog_cache_enabled=_env.bool("CATALOG_CACHE_ENABLED", default=True),
        # Uploaded catalog files wait here for the import task: web and worker processes
        # must share it. Larger uploads are refused with 413.
        catalog_import_dir=Path(
            _env.str("CATALOG_IMPORT_DIR", default=str(BASE_DIR / "var" / "imports"))
        ),
        catalog_import_max_bytes=_env.int("CATALOG_IMPORT_MAX_BYTES", default=1024**3),
        # Rows applied per transaction (docs/api.md, "Bulk catalog import"). Larger chunks
        # cost more per row: the search vocabulary's row trigger updates the same word
        # rows again and again within one transaction (docs/performance_tuning.md).
        catalog_import_chunk_rows=_env.int("CATALOG_IMPORT_CHUNK_ROWS", default=1_000),
        # Off only to measure Django's full request cycle against it (docs/adr/0020).
        lean_gateway_enabled=_env.bool("LEAN_GATEWAY_ENABLED", default=True),
        # False behind a pooler that cannot keep prepared statements (PgBouncer in
        # transaction mode before 1.21): hot reads then go through Django's cursor.
        database_prepared_statements=_env.bool("DATABASE_PREPARED_STATEMENTS", default=True),
        encryption_keys=encryption_keys_parse(_env.str("ENCRYPTION_KEYS", default="")),
        # Prometheus metrics (emporium.observability.metrics): off removes the instrumentation.
        metrics_enabled=_env.bool("METRICS_ENABLED", default=True),
        # Who may read GET /metrics: clients in these networks, or a request with the token.
        metrics_allowed_networks=networks_parse(
            "METRICS_ALLOWED_NETWORKS",
            _env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"]),
        ),
        metrics_token=_env.str("METRICS_TOKEN", default=None) or None,
        # The dependencies whose loss makes /readyz answer 503 (the others: 200
        # "degraded"); emporium.observability.health checks the names.
        readiness_required=frozenset(
            _env.list("READINESS_REQUIRED", default=["database", "cache", "broker"])
        ),
        # A process without an HTTP port of its own (worker, beat, relay) serves
        # /metrics here; unset, each takes its own default port.
        metrics_port=_env.int("METRICS_PORT", default=None),
        metrics_bind=_env.str("METRICS_BIND", default="127.0.0.1"),
        # The web workers' shared metric files; unset, the server launcher makes one.
        prometheus_multiproc_dir=(
            Path(_env.str("PROMETHEUS_MULTIPROC_DIR"))
            if _env.str("PROMETHEUS_MULTIPROC_DIR", default="")
            else None
        ),
        order_payment_timeout_seconds=_env.int("ORDER_PAYMENT_TIMEOUT_SECONDS", default=1800),
        low_stock_threshold=_env.int("LOW_STOCK_THRESHOLD", default=5),
        payment_provider_url=_env.str("PAYMENT_PROVIDER_URL", default="http://127.0.0.1:8100"),
        payment_provider_api_key=_env.str("PAYMENT_PROVIDER_API_KEY", default=None),
        payment_webhook_secret=_env.str("PAYMENT_WEBHOOK_SECRET", default=None),
        payment_callback_url=_env.str("PAYMENT_CALLBACK_URL", default=None) or None,
        email_url=_env.str("EMAIL_URL", default=None) or None,
        email_failover_url=_env.str("EMAIL_FAILOVER_URL", default=None) or None,
        push_provider_url=_env.str("PUSH_PROVIDER_URL", default=None) or None,
        push_project_id=_env.str("PUSH_PROJECT_ID", default="emporium"),
        push_provider_access_token=_env.str("PUSH_PROVIDER_ACCESS_TOKEN", default=None) or None,
        # Messages a second the providers accept from this shop (0: no limit).
        notification_email_rate=_env.int("NOTIFICATION_EMAIL_RATE", default=2000),
        notification_push_rate=_env.int("NOTIFICATION_PUSH_RATE", default=10000),
        default_from_email=_env.str(
            "DEFAULT_FROM_EMAIL", default="Emporium <orders@emporium.example>"
        ),
    )


def replica_pin_seconds(*, pin: float | None, max_lag: float, health: float) -> float:
    """The read-your-writes window; one shorter than a replica may lag refuses to start.

    A replica is used only while its lag, measured at most ``health`` seconds
    ago, is within ``max_lag``: a write is on it ``max_lag + health`` seconds
    after it committed at the latest.
    """
    least = max_lag + health
    if pin is None:
        return max_lag + 2 * health
    if pin < least:
        raise ImproperlyConfigured(
            f"DATABASE_REPLICA_PIN_SECONDS={pin} is shorter than DATABASE_REPLICA_MAX_LAG_SECONDS "
            f"+ DATABASE_REPLICA_HEALTH_SECONDS ({least}): a client could miss its own write."
        )
    return pin


def networks_parse(
    variable: str, entries: list[str]
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDRs (a bare address is a network of one); a wrong one stops startup."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as error:
            raise ImproperlyConfigured(f"{variable}: {entry!r} is not a network: {error}") from None
    return tuple(networks)


# A key id goes into every ciphertext (``v1:<kid>:...``); no ":" and no LIKE wildcard.
_KEY_ID = re.compile(r"[A-Za-z0-9-]{1,32}")
_KEY_BYTES = 32  # AES-256


def encryption_keys_parse(text: str) -> tuple[tuple[str, bytes], ...]:
    """``kid:base64key,kid:base64key`` as (kid, 32-byte key) pairs; the first one seals.

    Every listed key opens what it sealed, so an old key stays listed until
    ``manage.py rotate_encryption_keys`` has moved every row off it.
    """
    entries = key_entries_parse(
        text,
        variable="ENCRYPTION_KEYS",
        kid_pattern=_KEY_ID,
        key_bytes=_KEY_BYTES,
        algorithm="AES-256",
        entry_format="<kid>:<base64 key>, the kid 1-32 of A-Z a-z 0-9 -.",
    )
    return tuple((entry.kid, entry.key) for entry in entries)


def encryption_keys_local(path: Path) -> tuple[tuple[str, bytes], ...]:
    """This installation's own key, made on first use, for profiles without ENCRYPTION_KEYS.

    The file is in the ENCRYPTION_KEYS format, made and guarded by
    :func:`config.settings.keyring.installation_file`.
    """
    text = installation_file(
        path,
        lambda: (
            f"local-{secrets.token_hex(4)}:"
            f"{base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()}\n"
        ),
    )
    keys = encryption_keys_parse(text)
    if not keys:
        raise ImproperlyConfigured(f"{path} holds no key.")
    return keys


ENV = read_environment()


def database_config(
    url: str | None,
    *,
    sqlite_path: Path,
    conn_max_age: int,
    pool_min_size: int = 0,
    pool_max_size: int = 0,
    pool_timeout: float = 5.0,
) -> dict[str, object]:
    """PostgreSQL (psycopg 3) from a URL, else SQLite in WAL mode.

    With ``pool_max_size`` > 0 each process holds at most that many PostgreSQL
    connections (psycopg's pool, docs/db_optimization.md): a request borrows one
    and gives it back when it ends (``CONN_MAX_AGE`` 0, the only value Django
    allows with a pool, and the right one under ASGI, where every request runs
    on a thread of its own). A request that waits ``pool_timeout`` seconds for
    one is answered 503. Without a pool, connections persist per thread for
    ``conn_max_age`` seconds.
    """
    if url:
        config: dict[str, object] = environ.Env.db_url_config(url)
        options: dict[str, object] = dict(config.get("OPTIONS") or {})  # type: ignore[call-overload]
        if config.get("ENGINE") == "django.db.backends.postgresql":
            # The same backend with a health check that needs no round trip.
            config["ENGINE"] = "emporium.core.db_backends.postgresql"
            if pool_max_size > 0:
                options["pool"] = {
                    "min_size": min(pool_min_size, pool_max_size),
                    "max_size": pool_max_size,
                    "timeout": pool_timeout,
                }
        config["CONN_MAX_AGE"] = 0 if "pool" in options else conn_max_age
        # A pooled connection is checked by the backend as it leaves the pool,
        # without psycopg's round trip (emporium.core.db_backends.postgresql).
        config["CONN_HEALTH_CHECKS"] = "pool" not in options
        config["OPTIONS"] = options
        return config
    sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(sqlite_path),
        "OPTIONS": {
            # IMMEDIATE takes the write lock at BEGIN, so two writers queue on
            # busy_timeout instead of failing with "database is locked" on upgrade.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA foreign_keys=ON;"
                "PRAGMA busy_timeout=20000;"
            ),
        },
    }


# How long a request waits for a replica connection before reading from the primary.
REPLICA_POOL_TIMEOUT_SECONDS = 1.0
REPLICA_CONNECT_TIMEOUT_SECONDS = 1


def replica_database_configs(
    urls: tuple[str, ...], *, primary: dict[str, object]
) -> dict[str, dict[str, object]]:
    """One alias per replica URL (``replica_0``, ...), tuned like the primary's.

    Each has the pool sizes of the primary (a process holds at most that many
    connections per replica), a one-second connect and pool timeout, and the
    replica backend, which reads from the primary when the replica cannot be
    reached (emporium.core.db_backends.postgresql_replica). Tests use the
    primary's test database for it.
    """
    if urls and primary.get("ENGINE") != "emporium.core.db_backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URLS needs DATABASE_URL on PostgreSQL.")
    configs: dict[str, dict[str, object]] = {}
    for index, url in enumerate(urls):
        config: dict[str, object] = environ.Env.db_url_config(url)
        if config.get("ENGINE") != "django.db.backends.postgresql":
            raise ImproperlyConfigured(f"DATABASE_REPLICA_URLS: entry {index} is not PostgreSQL.")
        options: dict[str, object] = dict(config.get("OPTIONS") or {})  # type: ignore[call-overload]
        primary_options: dict[str, object] = primary["OPTIONS"]  # type: ignore[assignment]
        pool = primary_options.get("pool")
        if isinstance(pool, dict):
            options["pool"] = {
                **pool,
                "timeout": min(pool["timeout"], REPLICA_POOL_TIMEOUT_SECONDS),
            }
        options.setdefault("connect_timeout", REPLICA_CONNECT_TIMEOUT_SECONDS)
        config.update(
            ENGINE="emporium.core.db_backends.postgresql_replica",
            OPTIONS=options,
            CONN_MAX_AGE=primary["CONN_MAX_AGE"],
            CONN_HEALTH_CHECKS=primary["CONN_HEALTH_CHECKS"],
            TEST={"MIRROR": "default"},
        )
        configs[f"replica_{index}"] = config
    return configs


def cache_config(
    url: str | None,
    *,
    key_prefix: str,
    location: str = "emporium",
    ignore_exceptions: bool = False,
) -> dict[str, object]:
    """Redis through django-redis when configured; an in-process cache otherwise.

    ``ignore_exceptions`` makes django-redis answer a failing server as a miss
    instead of raising; only caches whose every user can live with that set it.
    ``location`` names the in-process store, so two aliases do not share one.
    """
    if url:
        options: dict[str, object] = {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
        }
        if ignore_exceptions:
            options["IGNORE_EXCEPTIONS"] = True
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": key_prefix,
            "OPTIONS": options,
        }
    return {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": location,
        "KEY_PREFIX": key_prefix,
        "OPTIONS": {"MAX_ENTRIES": 50_000},
    }
