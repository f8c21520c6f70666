"""Every log line of every process, in one format (docs/observability_logs.md).

structlog renders the lines; the standard library's records (Django, Celery,
psycopg, our own ``logging.getLogger`` calls) go through the same processors
by way of structlog's ``ProcessorFormatter``, so a process writes either JSON
objects, one a line (``LOG_FORMAT=json``, the production default), or readable
console lines (``console``, the embedded default), never a mix.

Every line carries what the context has bound: the request id of the request,
task or WebSocket session it belongs to (``emporium.core.correlation``), and
keys that could hold a secret are masked before anything is rendered
(:func:`sensitive_keys_redact`).

Settings name :func:`logging_settings` as ``LOGGING`` and
:func:`logging_configure` as ``LOGGING_CONFIG``; Django calls the latter once
per process during ``django.setup()``. Nothing here imports Django models.
"""

from __future__ import annotations

import logging.config
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from emporium.core import correlation

LOG_FORMATS = ("json", "console")
REDACTED = "[redacted]"

# Keys whose value is never written, wherever they appear in a line (also nested).
SENSITIVE_KEYS = frozenset(
    {
        "access",
        "api_key",
        "authorization",
        "card",
        "card_number",
        "cookie",
        "cvc",
        "password",
        "provider_token",
        "refresh",
        "secret",
        "secret_key",
        "set-cookie",
        "token",
        "webhook_secret",
    }
)
# Credentials as they appear inside a message: "Bearer <jwt>" and bare JWTs.
_SENSITIVE_TEXT = re.compile(
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)


def _text_redact(value: str) -> str:
    # The substring tests keep the regular expression off the common line.
    if "eyJ" in value or "earer" in value or "EARER" in value:
        return _SENSITIVE_TEXT.sub(REDACTED, value)
    return value


def _redact(value: object, depth: int = 0) -> object:
    if isinstance(value, str):
        return _text_redact(value)
    if depth > 4:
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED if str(key).lower() in SENSITIVE_KEYS else _redact(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, depth + 1) for item in value]
    return value


def sensitive_keys_redact(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """Masks the values of :data:`SENSITIVE_KEYS` and bearer tokens inside text.

    A defence in depth: code does not log secrets in the first place, and
    ``tests/test_log_secrets.py`` runs a whole sign-in, checkout and payment
    at DEBUG and looks for each secret in what was written.
    """
    for key, value in event_dict.items():
        if key in SENSITIVE_KEYS or key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = _text_redact(value)
        elif isinstance(value, Mapping | list | tuple):
            event_dict[key] = _redact(value)
    return event_dict


def trace_ids_add(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """With tracing on, the current span's ``trace_id`` and ``span_id``, to find its trace."""
    ids = correlation.trace_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def _terminal_colours_drop(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """uvicorn passes its message again with terminal colour codes; the line needs it once."""
    event_dict.pop("color_message", None)
    return event_dict


def _shared_processors() -> list[Processor]:
    """What every line goes through, whether structlog or the standard library made it."""
    return [
        structlog.contextvars.merge_contextvars,
        trace_ids_add,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _terminal_colours_drop,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        sensitive_keys_redact,
    ]


def _renderer(log_format: str) -> Processor:
    if log_format == "json":
        return structlog.processors.JSONRenderer()
    # Plain tracebacks: the rich ones print each frame's local variables, secrets included.
    return structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback
    )


def formatter_make(*, log_format: str) -> structlog.stdlib.ProcessorFormatter:
    """The one formatter: every record through the shared processors, rendered as ``log_format``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if log_format == "json":
        # Tracebacks as text inside the one JSON object, never as extra lines.
        final.append(structlog.processors.format_exc_info)
    final.append(_renderer(log_format))
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(), processors=final
    )


def formatter_from_environment() -> structlog.stdlib.ProcessorFormatter:
    """:func:`formatter_make` for ``LOG_FORMAT``, for the app servers' own logging.

    ``config/server_logging.json`` names it: uvicorn and granian configure their
    logging from that file before any Django setting is read.
    """
    from config.settings.env import ENV

    return formatter_make(log_format=ENV.log_format)


def logging_settings(*, log_format: str, level: str, access_log: bool = True) -> dict[str, Any]:
    """The ``LOGGING`` dictionary: one handler on stderr, one formatter for every record.

    Without ``access_log`` the ``emporium.access`` logger keeps only warnings, so the
    request lines are neither formatted nor written (``ACCESS_LOG``).
    """
    formatter_make(log_format=log_format)  # refuses an unknown format at startup
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": formatter_make, "log_format": log_format}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO"},
            # The access log (emporium.observability.requests) says the same, once per request.
            "django.server": {"level": "WARNING"},
            # httpx writes a line per request (push, webhooks); failures are logged by the caller.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            **({} if access_log else {"emporium.access": {"level": "WARNING"}}),
        },
    }


def logging_configure(config: MutableMapping[str, Any]) -> None:
    """Applies ``LOGGING`` and points structlog's loggers at the same handler."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(dict(config))
    # Python's warnings (Celery's, Django's deprecations) as lines in the same format.
    logging.captureWarnings(True)
