"""Push: the request shape of FCM HTTP v1, sent concurrently over reused connections.

Each device token gets ``POST <base>/v1/projects/<project>/messages:send`` with
``{"message": {"token", "notification": {"title", "body"}, "data": {...}}}``
(FCM wants every data value as a string). Up to ``CONCURRENCY`` requests of a
batch are in flight at once on one ``httpx.AsyncClient`` per worker process,
whose keep-alive connections outlive the batch.

Answers: 2xx sent; ``UNREGISTERED`` (404, or any answer naming it) means the
token is dead and its row is removed; 429 and 5xx are transient (Retry-After
honoured); a connection error or timeout is transient; any other 4xx is
permanent. Without ``PUSH_PROVIDER_URL`` (the embedded profile) messages are
appended to a JSON-lines file instead.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
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
    """One event loop and one HTTP client per process, so connections outlive a batch."""

    loop: asyncio.AbstractEventLoop | None = None
    client: httpx.AsyncClient | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    configuration: tuple[Any, ...] = ()

    def run(self, messages: list[PushMessage]) -> list[_TokenResult]:
        configuration = (
            settings.PUSH_PROVIDER_URL,
            channel_config("push")["CONCURRENCY"],
        )
        with self.lock:
            if self.loop is None or self.loop.is_closed():
                self.loop = asyncio.new_event_loop()
            if self.client is None or configuration != self.configuration:
                if self.client is not None:
                    self.loop.run_until_complete(self.client.aclose())
                self.client = self.loop.run_until_complete(self._client(configuration))
                self.configuration = configuration
            return self.loop.run_until_complete(self._send_all(self.client, messages))

    async def _client(self, configuration: tuple[Any, ...]) -> httpx.AsyncClient:
        concurrency = int(configuration[1])
        headers = {"content-type": "application/json"}
        if settings.PUSH_PROVIDER_ACCESS_TOKEN:
            headers["authorization"] = f"Bearer {settings.PUSH_PROVIDER_ACCESS_TOKEN}"
        return httpx.AsyncClient(
            base_url=str(configuration[0]),
            headers=headers,
            timeout=httpx.Timeout(float(settings.PUSH_PROVIDER_TIMEOUT_SECONDS)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    async def _send_all(
        self, client: httpx.AsyncClient, messages: list[PushMessage]
    ) -> list[_TokenResult]:
        path = f"/v1/projects/{settings.PUSH_PROJECT_ID}/messages:send"
        concurrency = int(channel_config("push")["CONCURRENCY"])
        results: list[_TokenResult] = [_TokenResult(OutcomeResult.TRANSIENT)] * len(messages)
        queue = iter(range(len(messages)))

        async def worker() -> None:
            for position in queue:
                message = messages[position]
                try:
                    body = json.dumps(message.fcm_body()).encode()
                    response = await client.post(path, content=body)
                    results[position] = response_classify(response)
                except httpx.TransportError as error:
                    results[position] = _TokenResult(
                        OutcomeResult.TRANSIENT, f"connection: {type(error).__name__} {error}"
                    )

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(messages)))))
        return results


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
