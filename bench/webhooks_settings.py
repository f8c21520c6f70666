"""The production profile for ``bench.webhooks``: its receiver listens on 127.0.0.1 over
http, and retries come back after about a second instead of ten (the backoff's shape is kept)."""

from config.settings.production import *  # noqa: F403

WEBHOOKS_REQUIRE_HTTPS = False
WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
WEBHOOKS_RETRY_BASE_SECONDS = 1.0
WEBHOOKS_RETRY_CAP_SECONDS = 4.0
