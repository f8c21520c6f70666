"""``manage.py run_banner``: waits for a real server, then prints its URLs and the demo logins."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from pytest_django import Settings

from emporium.demo.banner import PLACES, POLL_PATH, banner_text, demo_logins
from emporium.demo.seeding import CUSTOMER_PASSWORD, EMBEDDED_ROLE_PASSWORD, EMBEDDED_STAFF_PASSWORD


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == POLL_PATH else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_banner_waits_for_the_server_then_lists_every_place_and_login(
    settings: Settings,
) -> None:
    settings.EMPORIUM_PROFILE = "embedded"  # the one profile with well-known demo passwords
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = HTTPServer(("127.0.0.1", port), _Health)
    # The server comes up a second after the banner starts waiting for it.
    starter = threading.Timer(1.0, server.serve_forever)
    starter.start()
    started = time.monotonic()
    out = StringIO()
    try:
        call_command("run_banner", url=base, timeout=20, log_file=["var/log/x.log"], stdout=out)
    finally:
        server.shutdown()
        server.server_close()
        starter.join()

    assert time.monotonic() - started >= 1.0
    text = out.getvalue()
    for _, path in PLACES:
        assert f"{base}{path}\n" in text, path
    for password in (EMBEDDED_STAFF_PASSWORD, CUSTOMER_PASSWORD, EMBEDDED_ROLE_PASSWORD):
        assert password in text
    assert "var/log/x.log" in text


def test_no_server_is_an_error_after_the_timeout() -> None:
    with pytest.raises(CommandError, match="did not answer"):
        call_command("run_banner", url=f"http://127.0.0.1:{_free_port()}", timeout=0.5)


def test_no_passwords_outside_the_embedded_profile(settings: Settings) -> None:
    settings.EMPORIUM_PROFILE = "production"

    assert demo_logins() == []
    text = banner_text("http://shop.example", log_files=[])
    assert EMBEDDED_STAFF_PASSWORD not in text
    assert CUSTOMER_PASSWORD not in text
