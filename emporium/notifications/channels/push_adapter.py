"""Push: the request shape of FCM HTTP v1, sent concurrently over reused connections.

Each device token gets ``POST <base>/v1/projects/<project>/messages:send`` with
``{"message": {"token", "notification": {"title", "body"}, "data": {...}}}``
(FCM wants every data value as a string). Up to ``CONCURRENCY`` requests of a
batch are in flight at once, on threads sharing one ``httpx.Client`` per
worker process whose keep-alive connections outlive the batch.

Answers: 2xx sent; ``UNREGISTERED`` (404, or any answer naming it) means the
token is dead and its row is removed; 429 and 5xx are transient (Retry-After
honoured); a connection error or timeout is transient; any other 4xx is
permanent. Without ``PUSH_PROVIDER_URL`` (the embedded profile) messages are
appended to a JSON-lines file instead.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings

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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def response_classify(response: httpx.Response) -> _TokenResult:
    status = response.status_code
    if 200 <= status < 300:
        return _TokenResult(OutcomeResult.SENT)
    text = response.text[:500]
    if status == 404 or "UNREGISTERED" in text:
        return _TokenResult(OutcomeResult.SKIPPED, f"HTTP {status} UNREGISTERED")
    if status == 429 or status >= 500 or status in (401, 403):
        # 401/403: credentials being rotated or misconfigured; worth a later try.
        return _TokenResult(
            OutcomeResult.TRANSIENT, f"HTTP {status} {text}", _retry_after(response)
        )
    return _TokenResult(OutcomeResult.PERMANENT, f"HTTP {status} {text}")


@dataclass
class _Sender:
    """One HTTP client and one thread pool per process, so connections outlive a batch.

    httpx's synchronous client on threads: its asynchronous pool spends several
    times the CPU per request (measured by bench.push), and a push worker is
    CPU-bound on the client side.
    """

    client: httpx.Client | None = None
    pool: ThreadPoolExecutor | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    configuration: tuple[Any, ...] = ()

    def run(self, messages: list[PushMessage]) -> list[_TokenResult]:
        concurrency = int(channel_config("push")["CONCURRENCY"])
        configuration = (settings.PUSH_PROVIDER_URL, concurrency, settings.PUSH_PROJECT_ID)
        with self.lock:
            if self.client is None or self.pool is None or configuration != self.configuration:
                self.close()
                self.client = _client(str(configuration[0]), concurrency)
                self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="push")
                self.configuration = configuration
            client, pool = self.client, self.pool
        path = f"/v1/projects/{settings.PUSH_PROJECT_ID}/messages:send"
        return list(pool.map(lambda message: _post(client, path, message), messages))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        if self.client is not None:
            self.client.close()
            self.client = None


def _client(base_url: str, concurrency: int) -> httpx.Client:
    headers = {"content-type": "application/json"}
    if settings.PUSH_PROVIDER_ACCESS_TOKEN:
        headers["authorization"] = f"Bearer {settings.PUSH_PROVIDER_ACCESS_TOKEN}"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(float(settings.PUSH_PROVIDER_TIMEOUT_SECONDS)),
        # Headers and body leave in two writes: without TCP_NODELAY the body
        # would wait for the server to acknowledge the headers.
        transport=httpx.HTTPTransport(
            limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        ),
    )


def _post(client: httpx.Client, path: str, message: PushMessage) -> _TokenResult:
    try:
        response = client.post(path, content=json.dumps(message.fcm_body()).encode())
    except httpx.TransportError as error:
        return _TokenResult(OutcomeResult.TRANSIENT, f"connection: {type(error).__name__} {error}")
    return response_classify(response)


_SENDER = _Sender()


def _write_file(messages: list[PushMessage]) -> list[_TokenResult]:
    path = Path(settings.NOTIFICATION_PUSH_FILE_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        for message in messages:
            file.write(json.dumps(message.fcm_body(), ensure_ascii=False) + "\n")
    return [_TokenResult(OutcomeResult.SENT) for _ in messages]


def deliveries_send(deliveries: list[Delivery], report: Callable[[Outcome], None]) -> None:
    """Sends each delivery to every device of its recipient not yet reached."""
    tokens: dict[int, list[tuple[int, str]]] = {}
    for token_id, user_id, token in DeviceToken.objects.filter(
        user_id__in={delivery.recipient_id for delivery in deliveries}
    ).values_list("id", "user_id", "token"):
        tokens.setdefault(user_id, []).append((token_id, token))
    messages: list[PushMessage] = []
    for delivery in deliveries:
        done = set(delivery.sent_to or [])
        payload = delivery.payload or {}
        data = _data_strings(
            {**(payload.get("data") or {}), "kind": delivery.kind, "delivery_id": delivery.id}
        )
        for token_id, token in tokens.get(delivery.recipient_id, []):
            if token_id in done:
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
    results = _write_file(messages) if not settings.PUSH_PROVIDER_URL else _SENDER.run(messages)
    by_delivery: dict[int, list[tuple[PushMessage, _TokenResult]]] = {}
    for message, result in zip(messages, results, strict=True):
        by_delivery.setdefault(message.delivery_id, []).append((message, result))
    for delivery in deliveries:
        pairs = by_delivery.get(delivery.id, [])
        if not pairs:
            if delivery.sent_to:  # every device already has it
                report(Outcome(delivery.id, OutcomeResult.SENT))
            else:
                report(Outcome(delivery.id, OutcomeResult.SKIPPED, "no device registered"))
            continue
        report(_outcome(delivery, pairs))


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
