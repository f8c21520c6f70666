"""One format per process: structlog's lines and the standard library's alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from emporium.observability.logging import logging_settings

SCRIPT = (
    "import logging, django, structlog; django.setup(); "
    "logging.getLogger('django.request').warning('from the standard library %s', 1); "
    "structlog.get_logger('emporium.x').info('from structlog', order_id=7)"
)


ACCESS_SCRIPT = (
    "import django, structlog; django.setup(); "
    "structlog.get_logger('emporium.access').info('request', status=200)"
)


def _run(script: str = SCRIPT, **environment: str) -> list[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("LOG_FORMAT", "DATABASE_URL", "ACCESS_LOG")
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings.test", **environment)
    finished = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stderr.splitlines()


def test_json_lines_in_production_format() -> None:
    stdlib, ours = (json.loads(line) for line in _run(LOG_FORMAT="json"))

    assert (stdlib["event"], stdlib["level"], stdlib["logger"]) == (
        "from the standard library 1",
        "warning",
        "django.request",
    )
    assert (ours["event"], ours["order_id"], ours["logger"]) == ("from structlog", 7, "emporium.x")
    assert ours["timestamp"].endswith("Z")


def test_the_access_log_is_off_in_the_embedded_profile_unless_asked_for() -> None:
    assert _run(ACCESS_SCRIPT) == []
    [line] = _run(ACCESS_SCRIPT, ACCESS_LOG="true", LOG_FORMAT="json")
    assert json.loads(line)["logger"] == "emporium.access"
    # Where a database server is configured (production), it is on unless turned off.
    server = "postgres://nobody@127.0.0.1:1/none"
    [line] = _run(ACCESS_SCRIPT, DATABASE_URL=server)
    assert json.loads(line)["status"] == 200
    assert _run(ACCESS_SCRIPT, DATABASE_URL=server, ACCESS_LOG="false") == []


def test_readable_lines_in_the_embedded_profile_by_default() -> None:
    stdlib, ours = _run()

    assert "[warning  ] from the standard library 1" in stdlib
    assert "[django.request]" in stdlib
    assert "from structlog" in ours
    assert "order_id=7" in ours
    assert not ours.startswith("{")


def test_an_unknown_format_stops_startup() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_settings(log_format="xml", level="INFO")


def test_python_warnings_become_lines_of_the_same_format() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import django, warnings; django.setup(); warnings.warn('careful')"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    [line] = [json.loads(text) for text in finished.stderr.splitlines()]
    assert line["logger"] == "py.warnings"
    assert "careful" in line["event"]
