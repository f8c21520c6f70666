"""Push: the request shape of FCM HTTP v1, sent concurrently over reused connections.

Each device token gets ``POST <base>/v1/projects/<project>/messages:send`` with
``{"message": {"token", "notification": {"title", "body"}, "data": {...}}}``
(FCM wants every data value as a string). Up to ``CONCURRENCY`` requests are
in flight at once, one per keep-alive HTTP/1.1 connection, from an event loop
thread per worker process whose connections outlive the batch; each delivery's
outcome is reported as soon as its last device answered, so outcomes are
recorded while the rest of the batch is on the wire.

Answers: 2xx sent; ``UNREGISTERED`` (404, or any answer naming it) means the
token is dead and its row is removed; 429 and 5xx are transient (Retry-After
honoured); a connection error or timeout is transient; any other 4xx is
permanent. Without ``PUSH_PROVIDER_URL`` (the embedded profile) messages are
appended to a JSON-lines file instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import queue
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools
from django.conf import settings

try:
    import uvloop
except ImportError:  # the standard loop works, with more CPU per request
    uvloop = None  # type: ignore[assignment]

from emporium.notifications.channels.models import Delivery, DeviceToken, channel_config
from emporium.notifications.channels.outcomes import Outcome, OutcomeResult


@dataclass(frozen=True)
class PushMessage:
    delivery_id: int
    token_id: int
    token: str
    title: str
    body: str
    data: dict[str, str]

    def fcm_body(self) -> dict[str, Any]:
        return {
            "message": {
                "token": self.token,
                "notification": {"title": self.title, "body": self.body},
                "data": self.data,
            }
        }


@dataclass
class _TokenResult:
    result: OutcomeResult
    error: str = ""
    retry_after: float | None = None


def _data_strings(data: dict[str, Any]) -> dict[str, str]:
    return {
        str(key): value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        for key, value in data.items()
    }


def _retry_after(answer: _Answer) -> float | None:
    value = answer.headers.get(b"retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def response_classify(answer: _Answer) -> _TokenResult:
    status = answer.status
    if 200 <= status < 300:
        return _TokenResult(OutcomeResult.SENT)
    text = answer.body[:500].decode("utf-8", "replace")
    if status == 404 or "UNREGISTERED" in text:
        return _TokenResult(OutcomeResult.SKIPPED, f"HTTP {status} UNREGISTERED")
    if status == 429 or status >= 500 or status in (401, 403):
        # 401/403: credentials being rotated or misconfigured; worth a later try.
        return _TokenResult(OutcomeResult.TRANSIENT, f"HTTP {status} {text}", _retry_after(answer))
    return _TokenResult(OutcomeResult.PERMANENT, f"HTTP {status} {text}")


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, the answer parsed by httptools."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[_Answer] | None = None
        self.closed = False
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(f"RemoteProtocolError connection closed ({exc or 'by the server'})")

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.close()
            self._fail(f"RemoteProtocolError bad response ({error})")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        answer = _Answer(
            self.parser.get_status_code(),
            self.headers,
            b"".join(self.body),
            self.parser.should_keep_alive(),
        )
        self.headers, self.body = {}, []
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _fail(self, reason: str) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(_TransportFailure(reason))

    def timed_out(self) -> None:
        self.close()
        self._fail("ReadTimeout no answer in time")

    def request(self, data: bytes) -> asyncio.Future[_Answer]:
        if self.transport is None or self.closed:
            raise _TransportFailure("RemoteProtocolError connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool


class _TransportFailure(Exception):
    """No answer: refused, reset or closed connection, or a timeout (a transient failure)."""


class _Pool:
    """Up to ``size`` keep-alive connections to the provider, each with one request in flight.

    Lives on the sender's event loop; connections are opened when needed and kept.
    """

    def __init__(self, base_url: str, size: int, access_token: str | None, timeout: float):
        parts = urlsplit(base_url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.size = size
        self.slots: asyncio.Semaphore | None = None  # made on the loop that uses it
        self.idle: list[_Connection] = []
        host = parts.netloc.rsplit("@", 1)[-1]
        head = f"host: {host}\r\ncontent-type: application/json\r\n"
        if access_token:
            head += f"authorization: Bearer {access_token}\r\n"
        self.head = head
        self.ssl = ssl.create_default_context() if self.tls else None

    async def _connection(self) -> _Connection:
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return connection
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.tls else None,
                ),
                self.timeout,
            )
        except TimeoutError as error:
            raise _TransportFailure("ConnectTimeout no connection in time") from error
        except OSError as error:
            raise _TransportFailure(f"ConnectError {error}") from error
        transport = connection.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:  # the request leaves in one write; do not hold it back
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    async def post(self, path: str, body: bytes) -> _Answer:
        data = (
            f"POST {self.prefix}{path} HTTP/1.1\r\n{self.head}content-length: {len(body)}\r\n\r\n"
        ).encode() + body
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.size)
        async with self.slots:
            connection = await self._connection()
            deadline = asyncio.get_running_loop().call_later(self.timeout, connection.timed_out)
            try:
                answer = await connection.request(data)
            finally:
                deadline.cancel()
            if answer.keep_alive and not connection.closed:
                self.idle.append(connection)
            else:
                connection.close()
            return answer

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle = []


class _Sender:
    """One event loop thread and one connection pool per process, outliving the batches.

    The loop (uvloop when installed) keeps ``CONCURRENCY`` requests in flight
    over as many keep-alive connections; the calling thread takes the answers
    as they come and records them while the next requests are on the wire. The
    HTTP/1.1 exchange is written by hand and parsed by httptools: httpx spent
    about 20 times the CPU per request (bench.push), and a push worker is
    CPU-bound on the client side.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: _Pool | None = None
        self.pid = 0
        self.configuration: tuple[Any, ...] = ()

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None or self.pid != os.getpid():  # a forked child starts its own
            loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="push-sender", daemon=True).start()
            self.loop, self.pid, self.pool, self.configuration = loop, os.getpid(), None, ()
        return self.loop

    def connections(self) -> tuple[asyncio.AbstractEventLoop, _Pool]:
        """The loop and the connection pool, made (again) for this process and the settings."""
        configuration = (
            str(settings.PUSH_PROVIDER_URL),
            int(channel_config("push")["CONCURRENCY"]),
            settings.PUSH_PROVIDER_ACCESS_TOKEN,
            float(settings.PUSH_PROVIDER_TIMEOUT_SECONDS),
        )
        with self.lock:
            loop = self._loop()
            if self.pool is None or configuration != self.configuration:
                old, self.pool = self.pool, _Pool(*configuration)
                self.configuration = configuration
                if old is not None:
                    loop.call_soon_threadsafe(old.close)
            return loop, self.pool


_SENDER = _Sender()

# Called with a message's index in its group and the answer its device got.
_Done = Callable[[int, _TokenResult], None]


class PushSession:
    """Groups of messages handed to the process's sender one after another.

    :meth:`submit` puts a group on the wire without waiting; :meth:`take` hands
    the answers, in the calling thread and as they arrive, to the ``done`` of
    the group they belong to, until no more than ``keep`` are outstanding. A
    caller can so prepare its next group (claim the rows, read their tokens)
    while the connections are still busy with the last requests of this one.
    """

    def __init__(self) -> None:
        self.answers: queue.SimpleQueue[tuple[_Done, int, _TokenResult]] = queue.SimpleQueue()
        self.outstanding = 0
        self.futures: list[concurrent.futures.Future[None]] = []

    def submit(self, messages: list[PushMessage], done: _Done) -> None:
        if not messages:
            return
        if not settings.PUSH_PROVIDER_URL:
            for index, result in enumerate(_write_file(messages)):
                done(index, result)
            return
        loop, pool = _SENDER.connections()
        path = f"/v1/projects/{settings.PUSH_PROJECT_ID}/messages:send"
        bodies = [json.dumps(message.fcm_body()).encode() for message in messages]
        answers = self.answers

        async def one(index: int) -> None:
            try:
                result = response_classify(await pool.post(path, bodies[index]))
            except _TransportFailure as error:
                result = _TokenResult(OutcomeResult.TRANSIENT, f"connection: {error}")
            except Exception as error:  # reported as transient, never lost
                result = _TokenResult(OutcomeResult.TRANSIENT, f"connection: {error!r}")
            answers.put((done, index, result))

        async def every() -> None:
            await asyncio.gather(*(one(index) for index in range(len(messages))))

        self.outstanding += len(messages)
        self.futures.append(asyncio.run_coroutine_threadsafe(every(), loop))

    def take(self, *, keep: int = 0) -> None:
        """Records answers until at most ``keep`` messages are still unanswered."""
        try:
            while self.outstanding > keep:
                done, index, result = self.answers.get()
                self.outstanding -= 1
                done(index, result)
        except BaseException:
            self.cancel()
            raise
        if not self.outstanding:
            for future in self.futures:
                future.result()
            self.futures = []

    def cancel(self) -> None:
        """Stops what is still queued; the rows not recorded stay claimed until their lease ends."""
        for future in self.futures:
            future.cancel()
        self.futures = []


def _write_file(messages: list[PushMessage]) -> list[_TokenResult]:
    path = Path(settings.NOTIFICATION_PUSH_FILE_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        for message in messages:
            file.write(json.dumps(message.fcm_body(), ensure_ascii=False) + "\n")
    return [_TokenResult(OutcomeResult.SENT) for _ in messages]


def deliveries_submit(
    session: PushSession, deliveries: list[Delivery], report: Callable[[Outcome], None]
) -> None:
    """Reads the recipients' tokens and puts a message for every device of each recipient
    not yet reached on the wire through ``session``.

    ``report`` gets each delivery's outcome, from :meth:`PushSession.take`, as
    soon as the last of its devices answered.
    """
    tokens: dict[int, list[tuple[int, str]]] = {}
    for token_id, user_id, token in DeviceToken.objects.filter(
        user_id__in={delivery.recipient_id for delivery in deliveries}
    ).values_list("id", "user_id", "token"):
        tokens.setdefault(user_id, []).append((token_id, token))
    messages: list[PushMessage] = []
    for delivery in deliveries:
        reached = set(delivery.sent_to or [])
        payload = delivery.payload or {}
        data = _data_strings(
            {**(payload.get("data") or {}), "kind": delivery.kind, "delivery_id": delivery.id}
        )
        for token_id, token in tokens.get(delivery.recipient_id, []):
            if token_id in reached:
                continue
            messages.append(
                PushMessage(
                    delivery_id=delivery.id,
                    token_id=token_id,
                    token=token,
                    title=str(payload.get("title", "")),
                    body=str(payload.get("body", "")),
                    data=data,
                )
            )
    by_delivery: dict[int, list[tuple[PushMessage, _TokenResult]]] = {}
    waiting: dict[int, int] = {}
    for message in messages:
        waiting[message.delivery_id] = waiting.get(message.delivery_id, 0) + 1
    for delivery in deliveries:
        if delivery.id not in waiting:
            if delivery.sent_to:  # every device already has it
                report(Outcome(delivery.id, OutcomeResult.SENT))
            else:
                report(Outcome(delivery.id, OutcomeResult.SKIPPED, "no device registered"))
    by_id = {delivery.id: delivery for delivery in deliveries}

    def done(index: int, result: _TokenResult) -> None:
        message = messages[index]
        pairs = by_delivery.setdefault(message.delivery_id, [])
        pairs.append((message, result))
        if len(pairs) == waiting[message.delivery_id]:  # its last device answered
            report(_outcome(by_id[message.delivery_id], by_delivery.pop(message.delivery_id)))

    session.submit(messages, done)


def _outcome(delivery: Delivery, pairs: list[tuple[PushMessage, _TokenResult]]) -> Outcome:
    sent = tuple(
        message.token_id for message, result in pairs if result.result == OutcomeResult.SENT
    )
    dead = tuple(
        message.token_id for message, result in pairs if result.result == OutcomeResult.SKIPPED
    )
    transient = [result for _, result in pairs if result.result == OutcomeResult.TRANSIENT]
    permanent = [result for _, result in pairs if result.result == OutcomeResult.PERMANENT]
    reached = bool(sent) or bool(delivery.sent_to)
    if transient:
        retry_after = max((result.retry_after or 0.0 for result in transient), default=0.0)
        return Outcome(
            delivery.id,
            OutcomeResult.TRANSIENT,
            transient[0].error,
            retry_after=retry_after or None,
            sent_to=sent,
            dead_tokens=dead,
        )
    if reached:
        return Outcome(delivery.id, OutcomeResult.SENT, dead_tokens=dead)
    if permanent:
        return Outcome(delivery.id, OutcomeResult.PERMANENT, permanent[0].error, dead_tokens=dead)
    return Outcome(
        delivery.id,
        OutcomeResult.SKIPPED,
        "every device token was unregistered",
        dead_tokens=dead,
    )
