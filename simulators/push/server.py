"""A local stand-in for a push provider with the request shape of FCM HTTP v1.

It is a separate HTTP/1.1 service (asyncio and httptools, keep-alive) with
what a real provider does and what delivery code must cope with:

* ``POST /v1/projects/<project>/messages:send`` with
  ``{"message": {"token", "notification": {"title", "body"}, "data"}}``
  answers ``{"name": "projects/<project>/messages/<n>"}``;
* dead tokens: a token starting with ``dead-``, or a fixed fraction of all
  tokens (``--dead-rate``, decided by a hash of the token so a token is dead
  every time), answers 404 ``NOT_FOUND`` with FCM's ``UNREGISTERED`` error code;
* transient failures at ``--failure-rate``, half 503 ``UNAVAILABLE`` and half
  429 ``QUOTA_EXCEEDED``, both with ``Retry-After: --retry-after``; a message
  that failed is not counted as received;
* latency (``--latency-ms`` with ``--jitter-ms``), an ``outage`` flag (every
  request 503), and an optional bearer token (``--access-token``, else 401);
* ``GET /v1/stats`` counts requests, messages accepted, duplicates (the same
  token and ``data.delivery_id`` accepted twice), unregistered and transient
  answers; ``POST /v1/control`` changes latency, rates or the outage at run
  time (``"reset": true`` also forgets what was received).

Run: ``python -m simulators.push --port 8200``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import httptools

SEND_SUFFIX = "/messages:send"


@dataclass
class PushState:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    failure_rate: float = 0.0
    dead_rate: float = 0.0
    retry_after: float = 1.0
    outage: bool = False
    access_token: str | None = None
    random: random.Random = field(default_factory=random.Random)
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    unregistered: int = 0
    transient: int = 0
    invalid: int = 0
    # (token, data.delivery_id) -> times accepted
    received: dict[tuple[str, str], int] = field(default_factory=dict)

    def token_dead(self, token: str) -> bool:
        if token.startswith("dead-"):
            return True
        if self.dead_rate <= 0:
            return False
        digest = hashlib.blake2b(token.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") / 2**32 < self.dead_rate

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "unregistered": self.unregistered,
            "transient": self.transient,
            "invalid": self.invalid,
            "distinct": len(self.received),
        }

    def control(self, data: dict[str, Any]) -> None:
        for name in ("latency_ms", "jitter_ms", "failure_rate", "dead_rate", "retry_after"):
            if name in data:
                setattr(self, name, float(data[name]))
        if "outage" in data:
            self.outage = bool(data["outage"])
        if data.get("reset"):
            self.requests = self.accepted = self.duplicates = 0
            self.unregistered = self.transient = self.invalid = 0
            self.received.clear()


def _fcm_error(status: int, state: str, message: str, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": state}
    if code:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
        ]
    return {"error": error}


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


class PushProtocol(asyncio.Protocol):
    def __init__(self, state: PushState) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        # Answers go out in request order even when latency reorders the work.
        self.previous: asyncio.Future[None] | None = None
        self.tasks: set[asyncio.Future[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(400, {"error": {"code": 400, "message": "bad HTTP"}}, close=True)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        url, body, headers = self.url, b"".join(self.body), self.headers
        self.url, self.body, self.headers = b"", [], {}
        keep_alive = self.parser.should_keep_alive()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        previous, self.previous = self.previous, done
        task = asyncio.ensure_future(
            self._answer(method, url, headers, body, keep_alive, previous, done)
        )
        self.tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self.tasks.discard)

    async def _answer(
        self,
        method: bytes,
        url: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        keep_alive: bool,
        previous: asyncio.Future[None] | None,
        done: asyncio.Future[None],
    ) -> None:
        try:
            status, payload, extra = await self._handle(method, url.decode(), headers, body)
            if previous is not None:
                await previous
            self._write(status, payload, close=not keep_alive, headers=extra)
        finally:
            done.set_result(None)

    async def _handle(
        self, method: bytes, path: str, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        state = self.state
        if method == b"GET" and path == "/v1/stats":
            return 200, state.stats(), {}
        if method == b"POST" and path == "/v1/control":
            state.control(json.loads(body or b"{}"))
            return 200, state.stats(), {}
        if (
            method != b"POST"
            or not path.startswith("/v1/projects/")
            or not path.endswith(SEND_SUFFIX)
        ):
            return 404, _fcm_error(404, "NOT_FOUND", "no such method"), {}
        state.requests += 1
        authorization = headers.get(b"authorization", b"").decode()
        if state.access_token is not None and authorization != f"Bearer {state.access_token}":
            return 401, _fcm_error(401, "UNAUTHENTICATED", "bad credentials"), {}
        if state.latency_ms or state.jitter_ms:
            delay = state.latency_ms + state.random.uniform(-state.jitter_ms, state.jitter_ms)
            await asyncio.sleep(max(0.0, delay) / 1000)
        retry_after = {"retry-after": f"{state.retry_after:g}"}
        if state.outage:
            state.transient += 1
            return 503, _fcm_error(503, "UNAVAILABLE", "outage"), retry_after
        try:
            message = json.loads(body)["message"]
            token = message["token"]
            if not isinstance(token, str) or not token:
                raise ValueError("token")
        except (ValueError, KeyError, TypeError):
            state.invalid += 1
            return (
                400,
                _fcm_error(400, "INVALID_ARGUMENT", "malformed message", "INVALID_ARGUMENT"),
                {},
            )
        if state.token_dead(token):
            state.unregistered += 1
            return (
                404,
                _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
                {},
            )
        if state.failure_rate and state.random.random() < state.failure_rate:
            state.transient += 1
            if state.random.random() < 0.5:
                return 503, _fcm_error(503, "UNAVAILABLE", "try again", "UNAVAILABLE"), retry_after
            return (
                429,
                _fcm_error(429, "RESOURCE_EXHAUSTED", "quota", "QUOTA_EXCEEDED"),
                retry_after,
            )
        key = (token, str((message.get("data") or {}).get("delivery_id", "")))
        seen = state.received.get(key, 0)
        state.received[key] = seen + 1
        if seen:
            state.duplicates += 1
        state.accepted += 1
        project = path[len("/v1/projects/") : -len(SEND_SUFFIX)]
        return 200, {"name": f"projects/{project}/messages/{state.accepted}"}, {}

    def _write(
        self,
        status: int,
        payload: dict[str, Any],
        *,
        close: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        content = json.dumps(payload).encode()
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "content-type: application/json",
            f"content-length: {len(content)}",
        ]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if close:
            lines.append("connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + content)
        if close:
            self.transport.close()


async def serve(state: PushState, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: PushProtocol(state), host, port, backlog=1024)


class PushSimulatorThread:
    """The simulator on its own event loop in a thread of this process (tests)."""

    def __init__(self, state: PushState | None = None, host: str = "127.0.0.1") -> None:
        self.state = state or PushState()
        self.host = host
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(serve(self.state, self.host, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> PushSimulatorThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--dead-rate", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--access-token", default=None)
    parser.add_argument("--seed", type=int, default=None)
    options = parser.parse_args(argv)
    state = PushState(
        latency_ms=options.latency_ms,
        jitter_ms=options.jitter_ms,
        failure_rate=options.failure_rate,
        dead_rate=options.dead_rate,
        retry_after=options.retry_after,
        access_token=options.access_token,
        random=random.Random(options.seed),  # noqa: S311 - simulated failures, not secrets
    )

    async def run() -> None:
        server = await serve(state, options.host, options.port)
        print(f"push simulator listening on http://{options.host}:{options.port}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        try:
            import uvloop
        except ImportError:  # the standard loop is fine, only slower
            asyncio.run(run())
        else:
            uvloop.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
