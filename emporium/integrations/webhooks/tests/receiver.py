"""A real HTTP receiver for the tests and the benchmark: verifies signatures, fails on purpose.

It runs a ``ThreadingHTTPServer`` on 127.0.0.1 in a thread. Each request is
checked with :func:`signature_verify` against the secrets it holds (401 when
none matches, as a real receiver would answer) and recorded; what it answers
is decided by ``plan`` (a list of answers per event id, consumed in order,
then 200) or by ``answer`` (a function of the request), so a test can make
one event fail twice and the next succeed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from emporium.integrations.webhooks.signing import SIGNATURE_HEADER, signature_verify

# An answer: a status, or "timeout" (answer only after the client gave up), with headers.
Answer = tuple[int | str, dict[str, str]]


@dataclass
class Received:
    event_id: str
    aggregate_id: str
    body: bytes
    headers: dict[str, str]
    verified_with: list[str]  # the held secrets whose signature matched
    answered: int | str
    at: float


@dataclass
class Receiver:
    secrets: list[str]
    port: int = 0
    plan: dict[str, list[Answer]] = field(default_factory=dict)
    answer: Callable[[dict[str, Any]], Answer] | None = None
    timeout_sleep: float = 1.5
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def respond(self, body: bytes, headers: dict[str, str]) -> Answer:
        header = headers.get(SIGNATURE_HEADER, "")
        with self.lock:
            held = list(self.secrets)
        verified = [s for s in held if signature_verify(header=header, body=body, secret=s)]
        event = json.loads(body) if body else {}
        event_id = str(event.get("id", ""))
        answer: Answer = (200, {})
        if not verified:
            answer = (401, {})
        else:
            with self.lock:
                planned = self.plan.get(event_id)
                if planned:
                    answer = planned.pop(0)
                elif self.answer is not None:
                    answer = self.answer(event)
        with self.lock:
            self.received.append(
                Received(
                    event_id=event_id,
                    aggregate_id=str(event.get("aggregate", {}).get("id", "")),
                    body=body,
                    headers=headers,
                    verified_with=verified,
                    answered=answer[0],
                    at=time.monotonic(),
                )
            )
        return answer

    def requests_for(self, event_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.event_id == event_id]

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.answered == 200]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sender reuses connections

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status, headers = receiver.respond(body, dict(self.headers.items()))
            if status == "timeout":
                time.sleep(receiver.timeout_sleep)
                status = 200
            payload = b'{"ok": true}' if status == 200 else b'{"error": "on purpose"}'
            self.send_response(int(status))
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def running_receiver(secrets: list[str] | None = None, **options: Any) -> Iterator[Receiver]:
    receiver = Receiver(secrets=list(secrets or []), **options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
