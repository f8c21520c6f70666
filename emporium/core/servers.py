"""How every app server is started: the options that bound slow clients and client addresses.

``python -m emporium.core.servers uvicorn|granian <their arguments>`` runs the
server with these options first; `make run`, the production commands and the
tests all start servers this way, so no server runs without them.

- Client addresses: neither server may rewrite the socket's peer address from
  ``X-Forwarded-For``; the application alone decides which proxies to believe
  (``TRUSTED_PROXY_COUNT``, ``emporium.core.client_ip``). uvicorn's
  ``--proxy-headers`` (on by default) would believe any client on loopback.
- Slow clients: a request's headers must arrive within
  ``HTTP_HEADER_TIMEOUT_SECONDS`` of its first byte (or of the connection
  opening), however slowly they trickle in; an idle keep-alive connection is
  closed after ``HTTP_KEEP_ALIVE_TIMEOUT_SECONDS``. granian has both settings;
  uvicorn has only the second, so :class:`HttpToolsProtocolWithHeaderTimeout`
  adds the first.
- Logs: the servers configure their logging from ``config/server_logging.json``,
  which sends their lines through the application's formatter.
- Metrics: the server's workers share a directory of metric files
  (``PROMETHEUS_MULTIPROC_DIR``), emptied or made anew at each start, so
  ``/metrics`` on any worker answers for all of them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from config.settings.env import BASE_DIR, ENV
from emporium.observability.metrics import MULTIPROCESS_VARIABLE, multiprocess_directory_prepare


class HttpToolsProtocolWithHeaderTimeout(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose headers take too long.

    The clock starts when the connection opens and again at the first byte of
    each later request, and stops when the headers are complete; bytes that
    trickle in do not restart it (they do restart uvicorn's keep-alive timer).
    """

    header_timeout_seconds: float = ENV.http_header_timeout_seconds

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.header_timeout_seconds, self._header_timeout
            )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.debug("closing a connection whose request headers took too long")
            self.transport.close()


# The servers' own lines (startup, errors) in the application's format, through the
# same formatter (emporium.observability.logging); their access lines are left to
# the application's access log.
SERVER_LOGGING = BASE_DIR / "config" / "server_logging.json"


def uvicorn_options() -> list[str]:
    return [
        "--log-config",
        str(SERVER_LOGGING),
        "--no-proxy-headers",
        "--http",
        f"emporium.core.servers:{HttpToolsProtocolWithHeaderTimeout.__name__}",
        "--timeout-keep-alive",
        str(ENV.http_keep_alive_timeout_seconds),
    ]


def granian_options() -> list[str]:
    # granian reads no forwarded headers; its header clock is in milliseconds (1..60000).
    header_timeout_ms = max(1, min(60_000, round(ENV.http_header_timeout_seconds * 1000)))
    return [
        "--log-config",
        str(SERVER_LOGGING),
        "--http1-header-read-timeout",
        str(header_timeout_ms),
    ]


SERVERS = {"uvicorn": uvicorn_options, "granian": granian_options}


def server_command(server: str, arguments: list[str]) -> list[str]:
    """The full command line of ``server`` with ``arguments`` (target, host, port...)."""
    return [sys.executable, "-m", server, *SERVERS[server](), *arguments]


def metrics_environment_prepare() -> None:
    """Gives the server about to start its own empty directory of worker metric files.

    Set in the environment before the server starts, so every worker's
    prometheus-client writes there and a scrape of any worker adds up all of
    them (``emporium.observability.metrics``).
    """
    if ENV.metrics_enabled:
        directory = multiprocess_directory_prepare(server_pid=os.getpid())
        os.environ[MULTIPROCESS_VARIABLE] = str(directory)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SERVERS:
        sys.exit(f"usage: python -m emporium.core.servers {{{'|'.join(SERVERS)}}} <arguments>")
    command = server_command(argv[0], argv[1:])
    metrics_environment_prepare()  # the server keeps this process's id: exec, not fork
    os.execv(command[0], command)  # noqa: S606 - this interpreter, a fixed module


if __name__ == "__main__":
    main(sys.argv[1:])
