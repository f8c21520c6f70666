"""The payment provider simulator as the tests start it: a separate process."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.support.processes import start_provider, stop_process


def test_a_webhook_secret_that_looks_like_an_option_starts_the_simulator() -> None:
    # URL-safe tokens begin with "-" one time in 64; on a command line argparse
    # took such a secret for an option and the simulator never started.
    secret = "-" + secrets.token_urlsafe(32)
    provider = start_provider(secret=secret)
    try:
        assert provider.alive()
        command_line = Path(f"/proc/{provider.process.pid}/cmdline").read_bytes()
        assert secret.encode() not in command_line
    finally:
        stop_process(provider.process)
