"""A local SMTP sink (aiosmtpd) that fails on purpose, for tests and benchmarks.

It accepts every message and counts it by Message-ID, so a test or benchmark
can tell lost from duplicated mail. Failures are injected on purpose:

* ``transient_rate``: that fraction of DATA commands answered 451 (try later);
* ``fail_first``: Message-IDs answered 451 the first time only;
* ``refused``: recipient addresses answered 550 (permanent) at RCPT;
* ``pipelining``: whether EHLO offers PIPELINING (RFC 2920); aiosmtpd reads
  commands one at a time from its stream, so pipelined commands just work.

It runs on uvloop where that is installed. Replies to pipelined commands go
out in one write when the next command is already in hand (as Postfix does:
it flushes its output when its input runs dry), so a pipelining client's
MAIL, RCPT and DATA are answered together.

``SmtpSink`` runs it on a thread of the calling process (tests).
``SmtpSinkProcesses`` runs it in ``processes`` processes listening on one port
(``SO_REUSEPORT``: the kernel spreads the connections), each with its own
event loop; their counts are added up, so a message received twice by two
processes is a duplicate like one received twice by one. Run it as a process
with ``python -m simulators.smtp_sink --port 2525 --stats-port 2526
[--processes 4]``; ``GET /stats`` on the stats port answers the counts as JSON
(``POST`` resets them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, AnyStr, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

_ROOT = Path(__file__).resolve().parent.parent
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

    def snapshot(self) -> tuple[Counter[str], dict[str, int]]:
        """The Message-IDs received (with their counts) and the other counters, as of now."""
        with self.lock:
            return Counter(self.received), {
                "transient": self.transient,
                "permanent": self.permanent,
                "sessions": self.sessions,
            }

    def stats(self) -> dict[str, Any]:
        return _stats(*self.snapshot())

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.transient = self.permanent = self.sessions = 0


def _stats(received: Counter[str], counters: dict[str, int]) -> dict[str, Any]:
    counts = list(received.values())
    return {
        "accepted": sum(counts),
        "distinct": len(counts),
        "duplicates": sum(count - 1 for count in counts if count > 1),
        **counters,
    }


# Replies after which the server closes the session: written at once, never held back.
_CLOSING_REPLIES = (b"221", b"421")


class SinkSMTP(SMTP):
    """aiosmtpd's server, answering commands that arrived together in one write.

    aiosmtpd writes each reply with a system call of its own; a pipelining
    client sends a message's MAIL, RCPT and DATA (and the previous message's
    content) in one write, and four writes back cost the sink more than
    reading them. A reply is held while the next command is already in the
    input buffer and goes out with the reply to the last one.
    """

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._held: list[bytes] = []
        self._flush_scheduled = False

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            reply = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        else:
            reply = status
        self._held.append(reply + b"\r\n")
        buffered: bytearray = self._reader._buffer  # type: ignore[attr-defined]
        if b"\n" in buffered and not reply.startswith(_CLOSING_REPLIES):
            # The next command is in hand; its handling pushes again. The
            # scheduled flush only matters if it does not (the loop runs it
            # once this connection's task waits for input).
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self._flush)
            return
        self._flush()
        await self._writer.drain()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._held and self.transport is not None and not self.transport.is_closing():
            self._writer.write(b"".join(self._held))
        self._held.clear()


_SERVER_OPTIONS: dict[str, Any] = {
    "hostname": "smtp-sink.local",  # not socket.getfqdn(), a name lookup per session
    "decode_data": False,
    "data_size_limit": 10 * 1024 * 1024,
    "enable_SMTPUTF8": True,
}


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (uvicorn's extras bring it): a sixth less CPU a message."""
    try:
        import uvloop
    except ImportError:  # the standard loop works the same, only slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _SinkController(Controller):
    def factory(self) -> SMTP:
        return SinkSMTP(self.handler, **_SERVER_OPTIONS)


class _Sink:
    host: str
    port: int

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def endpoint(self) -> dict[str, Any]:
        """This sink as an entry of NOTIFICATION_EMAIL_ENDPOINTS."""
        return {"HOST": self.host, "PORT": self.port, "TIMEOUT": 5}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SmtpSink(_Sink):
    """The sink on its own thread; ``stop`` and ``start`` again to take it away and back."""

    def __init__(
        self, handler: SinkHandler | None = None, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.handler = handler or SinkHandler()
        self.host = host
        self.port = port or _free_port()
        self._controller: Controller | None = None

    def start(self) -> SmtpSink:
        self._controller = _SinkController(
            self.handler, hostname=self.host, port=self.port, loop=_new_event_loop()
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class SinkOptions:
    """What a sink process is told; each process draws its failures from its own generator."""

    transient_rate: float = 0.0
    pipelining: bool = True
    seed: int | None = None

    def handler(self, index: int) -> SinkHandler:
        seed = None if self.seed is None else self.seed + index
        return SinkHandler(
            transient_rate=self.transient_rate,
            pipelining=self.pipelining,
            random=random.Random(seed),  # noqa: S311 - simulated failures, not secrets
        )


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    return listener


def _serve(control: Connection) -> None:
    """One sink process: an event loop on its own SO_REUSEPORT listener, answering ``control``.

    ``control`` brings (index, options, host, port) first, then "stats"
    (answered with the handler's snapshot), "reset" and "stop"; when the parent
    goes away the connection closes and this process ends.
    """
    index, options, host, port = control.recv()
    handler = SinkOptions(**options).handler(index)
    loop = _new_event_loop()
    asyncio.set_event_loop(loop)
    listener = _reuse_port_socket(host, port)
    listener.listen(1024)
    server = loop.run_until_complete(
        loop.create_server(
            # The greeting names the process, so a client can tell where it landed.
            lambda: SinkSMTP(
                handler, loop=loop, **{**_SERVER_OPTIONS, "hostname": f"smtp-sink-{index}.local"}
            ),
            sock=listener,
        )
    )

    def answer() -> None:
        while True:
            try:
                request = control.recv()
            except (EOFError, OSError):
                request = "stop"
            if request == "stats":
                control.send(handler.snapshot())
            elif request == "reset":
                handler.reset()
                control.send(None)
            else:
                loop.call_soon_threadsafe(loop.stop)
                return

    threading.Thread(target=answer, daemon=True).start()
    control.send(os.getpid())  # listening
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


class SmtpSinkProcesses(_Sink):
    """The sink in ``processes`` processes on one port, their counts added up.

    The port is held (bound, not listening) by the calling process for as long
    as the sink runs, so another program cannot take it between processes.
    """

    def __init__(
        self,
        options: SinkOptions | None = None,
        *,
        processes: int = 2,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.options = options or SinkOptions()
        self.processes = processes
        self.host = host
        self.port = port
        self.pids: list[int] = []
        self._children: list[tuple[subprocess.Popen[bytes], Connection]] = []
        self._reservation: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> SmtpSinkProcesses:
        self._reservation = _reuse_port_socket(self.host, self.port)
        self.port = int(self._reservation.getsockname()[1])
        try:
            for index in range(self.processes):
                # A program of its own (not a multiprocessing child), so its command line
                # says what it is to ps, py-spy and the benchmarks' CPU accounting.
                ours, theirs = socket.socketpair()
                process = subprocess.Popen(  # noqa: S603 - this interpreter, this module
                    [sys.executable, "-m", "simulators.smtp_sink", "--control-fd",
                     str(theirs.fileno())],
                    cwd=_ROOT,
                    pass_fds=[theirs.fileno()],
                )  # fmt: skip
                theirs.close()
                control = Connection(ours.detach())
                control.send((index, asdict(self.options), self.host, self.port))
                self._children.append((process, control))
            for process, control in self._children:
                if not control.poll(30):
                    raise RuntimeError(f"sink process {process.pid} did not start")
                self.pids.append(int(control.recv()))
        except BaseException:
            self.stop()
            raise
        return self

    def _ask(self, request: str) -> list[Any]:
        with self._lock:
            for _, control in self._children:
                control.send(request)
            return [control.recv() for _, control in self._children]

    def stats(self) -> dict[str, Any]:
        """The counts of every process added up, and each process's sessions."""
        received: Counter[str] = Counter()
        counters: dict[str, int] = {}
        sessions = []
        for found, found_counters in self._ask("stats"):
            received.update(found)
            for name, value in found_counters.items():
                counters[name] = counters.get(name, 0) + value
            sessions.append(found_counters["sessions"])
        return {**_stats(received, counters), "sessions_by_process": sessions}

    def received(self) -> Counter[str]:
        """How many times each Message-ID was accepted, over every process."""
        total: Counter[str] = Counter()
        for found, _ in self._ask("stats"):
            total.update(found)
        return total

    def reset(self) -> None:
        self._ask("reset")

    def stop(self) -> None:
        for _, control in self._children:
            with contextlib.suppress(OSError):  # already gone
                control.send("stop")
        for process, control in self._children:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            control.close()
        self._children = []
        self.pids = []
        if self._reservation is not None:
            self._reservation.close()
            self._reservation = None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--stats-port", type=int, default=2526)
    parser.add_argument("--transient-rate", type=float, default=0.0)
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--processes", type=int, default=1, help="server processes on the one port (SO_REUSEPORT)"
    )
    parser.add_argument("--control-fd", type=int, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.control_fd is not None:  # one of the processes of a SmtpSinkProcesses
        _serve(Connection(options.control_fd))
        return
    sink = SmtpSinkProcesses(
        SinkOptions(
            transient_rate=options.transient_rate,
            pipelining=not options.no_pipelining,
            seed=options.seed,
        ),
        processes=options.processes,
        port=options.port,
        host=options.host,
    ).start()

    class StatsHandler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            body = json.dumps(sink.stats()).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            sink.reset()
            self.do_GET()

    stats = ThreadingHTTPServer((options.host, options.stats_port), StatsHandler)
    threading.Thread(target=stats.serve_forever, daemon=True).start()
    print(
        f"SMTP sink on {options.host}:{sink.port} ({options.processes} processes, pids"
        f" {' '.join(map(str, sink.pids))}), stats on :{options.stats_port}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)
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
