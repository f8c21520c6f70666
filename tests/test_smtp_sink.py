"""The SMTP sink (simulators/smtp_sink.py) as benchmarks and tests run it: several processes.

Each test drives the sink over real sockets with smtplib or raw commands; the
processes share one port (SO_REUSEPORT), so which one answers a connection is
the kernel's choice, and the greeting names it.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import BinaryIO

from simulators.smtp_sink import SinkHandler, SinkOptions, SmtpSink, SmtpSinkProcesses
from tests.support.processes import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent


def _message(message_id: str) -> bytes:
    return (
        f"From: shop@example.com\r\nTo: ada@example.com\r\nMessage-ID: {message_id}\r\n"
        "Subject: test\r\n\r\nbody\r\n"
    ).encode()


def _connect(sink: SmtpSinkProcesses) -> tuple[smtplib.SMTP, str]:
    """A session and the name of the process that took it (its greeting's host name)."""
    client = smtplib.SMTP(sink.host, sink.port, timeout=10)
    code, text = client.ehlo()
    assert code == 250
    return client, text.decode().splitlines()[0]


def _one_per_process(sink: SmtpSinkProcesses) -> dict[str, smtplib.SMTP]:
    """Connects until every process holds a session; the extra sessions are closed."""
    sessions: dict[str, smtplib.SMTP] = {}
    for _ in range(400):
        client, process = _connect(sink)
        if process in sessions:
            client.quit()
        else:
            sessions[process] = client
        if len(sessions) == sink.processes:
            return sessions
    raise AssertionError(f"400 connections reached only {sorted(sessions)}")


def _send_until_accepted(client: smtplib.SMTP, message_id: str) -> int:
    """Sends the message, repeating it on a 451 as the bare benchmark client does; the 451s."""
    refused = 0
    while True:
        try:
            client.sendmail("shop@example.com", ["ada@example.com"], _message(message_id))
            return refused
        except smtplib.SMTPDataError as error:
            if error.smtp_code != 451:
                raise
            refused += 1


def test_every_process_takes_sessions_and_each_message_is_counted_once() -> None:
    options = SinkOptions(transient_rate=0.2, seed=3)
    with SmtpSinkProcesses(options, processes=3) as sink:
        sessions = _one_per_process(sink)
        accepted_by: Counter[str] = Counter()
        refused = 0
        for number in range(300):
            process = sorted(sessions)[number % 3]
            refused += _send_until_accepted(sessions[process], f"<m{number}@example.com>")
            accepted_by[process] += 1
        for client in sessions.values():
            client.quit()
        stats = sink.stats()
    assert stats["accepted"] == 300
    assert stats["distinct"] == 300
    assert stats["duplicates"] == 0
    assert stats["transient"] == refused > 0  # every process drew failures of its own
    assert len(stats["sessions_by_process"]) == 3
    assert min(stats["sessions_by_process"]) >= 1
    assert stats["sessions"] == sum(stats["sessions_by_process"])
    assert accepted_by == Counter(dict.fromkeys(sessions, 100))


def test_a_message_accepted_by_two_processes_is_a_duplicate() -> None:
    with SmtpSinkProcesses(processes=2) as sink:
        first, second = _one_per_process(sink).values()
        for client in (first, second, first):
            _send_until_accepted(client, "<twice@example.com>")
        _send_until_accepted(second, "<once@example.com>")
        first.quit()
        second.quit()
        stats = sink.stats()
        assert (stats["accepted"], stats["distinct"], stats["duplicates"]) == (4, 2, 2)
        assert sink.received() == Counter({"<twice@example.com>": 3, "<once@example.com>": 1})
        sink.reset()
        assert sink.stats() == {
            "accepted": 0,
            "distinct": 0,
            "duplicates": 0,
            "transient": 0,
            "permanent": 0,
            "sessions": 0,
            "sessions_by_process": [0, 0],
        }


def _replies(reader: BinaryIO, count: int) -> list[str]:
    """The next ``count`` replies, each with its lines joined."""
    replies: list[str] = []
    lines: list[str] = []
    while len(replies) < count:
        line = reader.readline()
        assert line, f"connection closed after {replies} {lines}"
        lines.append(line.decode().rstrip())
        if line[3:4] == b" ":  # the last line of a reply
            replies.append(" | ".join(lines))
            lines = []
    return replies


def test_pipelined_commands_are_all_answered_in_order_and_a_closing_reply_is_not_held() -> None:
    # Replies to commands that arrive together are held and written together:
    # none may be held for good, and the order must stay that of the commands.
    sink = SmtpSink(SinkHandler(fail_first={"<second@example.com>"}))
    with sink, socket.create_connection((sink.host, sink.port), timeout=5) as connection:
        reader = connection.makefile("rb")
        assert _replies(reader, 1)[0].startswith("220")
        connection.sendall(b"EHLO client\r\n")
        assert "PIPELINING" in _replies(reader, 1)[0]
        envelope = b"MAIL FROM:<shop@example.com>\r\nRCPT TO:<ada@example.com>\r\nDATA\r\n"
        connection.sendall(envelope)
        assert [r[:3] for r in _replies(reader, 3)] == ["250", "250", "354"]
        connection.sendall(_message("<first@example.com>") + b".\r\n" + envelope)
        assert [r[:3] for r in _replies(reader, 4)] == ["250", "250", "250", "354"]
        connection.sendall(_message("<second@example.com>") + b".\r\nRSET\r\nNOOP\r\n")
        assert [r[:3] for r in _replies(reader, 3)] == ["451", "250", "250"]
        connection.sendall(b"NOOP\r\nQUIT\r\nNOOP\r\n")
        assert [r[:3] for r in _replies(reader, 2)] == ["250", "221"]
        assert reader.read() == b""  # closed after the 221
    assert sink.handler.received == Counter({"<first@example.com>": 1})


def test_the_command_line_sink_answers_stats_and_its_processes_end_with_it() -> None:
    port, stats_port = free_port(), free_port()
    process = subprocess.Popen(  # noqa: S603 - this interpreter, the project's simulator
        [sys.executable, "-m", "simulators.smtp_sink", "--port", str(port),
         "--stats-port", str(stats_port), "--processes", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().decode()
        children = [int(pid) for pid in banner.split("pids ")[1].split(")")[0].split()]
        assert len(children) == 2
        client = smtplib.SMTP("127.0.0.1", port, timeout=10)
        client.sendmail("shop@example.com", ["ada@example.com"], _message("<cli@example.com>"))
        client.quit()
        with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/stats", timeout=10) as answer:
            stats = answer.read().decode()
        assert '"accepted": 1, "distinct": 1, "duplicates": 0' in stats
        os.kill(process.pid, signal.SIGKILL)  # no chance to stop them: they notice on their own
        process.wait(10)
        assert wait_until(lambda: not any(_running(pid) for pid in children))
    finally:
        stop_process(process)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
