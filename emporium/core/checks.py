"""System checks for ``manage.py check --deploy``: the secrets in force are real ones.

The profiles refuse weak or published secrets when they start
(config.settings.secret_keys); this check applies the same rule to the
settings actually in force, whatever module produced them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from config.settings.secret_keys import secret_problem


@register(Tags.security, deploy=True)
def secrets_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    found: list[tuple[str, str | None, bool]] = [
        ("SECRET_KEY", settings.SECRET_KEY, True),
        ("PAYMENT_WEBHOOK_SECRET", getattr(settings, "PAYMENT_WEBHOOK_SECRET", None), True),
    ]
    errors: list[CheckMessage] = []
    for name, value, hmac_key in found:
        if not value and name != "SECRET_KEY":
            continue  # optional ones (the webhook is then refused with 503)
        problem = secret_problem(name, value, hmac_key=hmac_key)
        if problem:
            errors.append(
                Error(
                    problem,
                    hint="Set it in the environment (docs/security.md, Secrets and configuration).",
                    id="emporium.E001",
                )
            )
    return errors
