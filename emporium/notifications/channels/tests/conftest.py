"""Fixtures for the notification channels' tests: real SMTP sinks, the push simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from simulators.push.server import PushSimulatorThread, PushState
from simulators.smtp_sink import SinkHandler, SmtpSink


@pytest.fixture(autouse=True)
def _channels_settings(settings: Any, tmp_path: Any) -> None:
    """Batches run in-process unless a test starts workers; no rate limit unless asked."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.NOTIFICATION_CHANNELS = {
        "email": {"QUEUE": "email", "BATCH_SIZE": 200, "RATE_PER_SECOND": 0},
        "push": {"QUEUE": "push", "BATCH_SIZE": 500, "RATE_PER_SECOND": 0, "CONCURRENCY": 8},
    }
    settings.NOTIFICATION_EMAIL_ENDPOINTS = []
    settings.NOTIFICATION_PUSH_FILE_PATH = tmp_path / "push" / "messages.jsonl"
    settings.PUSH_PROVIDER_URL = None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink(SinkHandler()) as sink:
        yield sink


@pytest.fixture
def push_simulator(settings: Any) -> Iterator[PushSimulatorThread]:
    with PushSimulatorThread(PushState(retry_after=3)) as simulator:
        settings.PUSH_PROVIDER_URL = simulator.url
        yield simulator
