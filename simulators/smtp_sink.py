"""A local SMTP sink (aiosmtpd) that fails on purpose, for tests and benchmarks.

It accepts every message and counts it by Message-ID, so a test or benchmark
can tell lost from duplicated mail. Failures are injected on purpose:

* ``transient_rate``: that fraction of DATA commands answered 451 (try later);
* ``fail_first``: Message-IDs answered 451 the first time only;
* ``refused``: recipient addresses answered 550 (permanent) at RCPT;
* ``pipelining``: whether EHLO offers PIPELINING (RFC 2920); aiosmtpd reads
  commands one at a time from its stream, so pipelined commands just work.

``SmtpSink`` runs it on a thread of the calling process (tests). Run it as a
process with ``python -m simulators.smtp_sink --port 2525 --stats-port 2526``;
``GET /stats`` on the stats port answers the counts as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

_MESSAGE_ID = re.compile(rb"(?im)^message-id:\s*(<[^>]*>)")


@dataclass
class SinkHandler:
    transient_rate: float = 0.0
    pipelining: bool = True
    # Seconds each DATA takes before the answer (a slow relay; lets a test kill mid-batch).
    delay_seconds: float = 0.0
    fail_first: set[str] = field(default_factory=set)
    # Message-IDs answered 421 (the server closing the connection) the first time.
    close_first: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    random: random.Random = field(default_factory=random.Random)
    received: Counter[str] = field(default_factory=Counter)
    transient: int = 0
    permanent: int = 0
    sessions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the new-style hook must record it itself
        self.sessions += 1
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refused:
            self.permanent += 1
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        content = envelope.original_content or b""
        found = _MESSAGE_ID.search(content)
        message_id = found.group(1).decode() if found else ""
        with self.lock:
            if message_id in self.close_first:
                self.close_first.discard(message_id)
                self.transient += 1
                return "421 4.3.2 closing the connection"
            if message_id in self.fail_first:
                self.fail_first.discard(message_id)
                self.transient += 1
                return "451 4.3.0 try again later"
            if self.transient_rate and self.random.random() < self.transient_rate:
                self.transient += 1
                return "451 4.3.0 try again later"
            self.received[message_id] += 1
        return "250 OK queued"

    def stats(self) -> dict[str, Any]:
        with self.lock:
            counts = list(self.received.values())
        return {
            "accepted": sum(counts),
            "distinct": len(counts),
            "duplicates": sum(count - 1 for count in counts if count > 1),
            "transient": self.transient,
            "permanent": self.permanent,
            "sessions": self.sessions,
        }

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.transient = self.permanent = self.sessions = 0


class SmtpSink:
    """The sink on its own thread; ``stop`` and ``start`` again to take it away and back."""

    def __init__(
        self, handler: SinkHandler | None = None, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.handler = handler or SinkHandler()
        self.host = host
        self.port = port or _free_port()
        self._controller: Controller | None = None

    def start(self) -> SmtpSink:
        self._controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            decode_data=False,
            data_size_limit=10 * 1024 * 1024,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def endpoint(self) -> dict[str, Any]:
        """This sink as an entry of NOTIFICATION_EMAIL_ENDPOINTS."""
        return {"HOST": self.host, "PORT": self.port, "TIMEOUT": 5}

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--stats-port", type=int, default=2526)
    parser.add_argument("--transient-rate", type=float, default=0.0)
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--seed", type=int, default=None)
    options = parser.parse_args(argv)
    handler = SinkHandler(
        transient_rate=options.transient_rate,
        pipelining=not options.no_pipelining,
        random=random.Random(options.seed),  # noqa: S311 - simulated failures, not secrets
    )
    sink = SmtpSink(handler, port=options.port, host=options.host).start()

    class StatsHandler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            body = json.dumps(handler.stats()).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            handler.reset()
            self.do_GET()

    stats = ThreadingHTTPServer((options.host, options.stats_port), StatsHandler)
    threading.Thread(target=stats.serve_forever, daemon=True).start()
    print(f"SMTP sink on {options.host}:{sink.port}, stats on :{options.stats_port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stats.shutdown()
        sink.stop()


if __name__ == "__main__":
    main()
