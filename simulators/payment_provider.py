"""A local stand-in for a card payment provider, for development, tests and benchmarks.

It is a separate HTTP service (standard library only) with what a real
provider's sandbox offers and what resilience code must cope with:

* ``POST /v1/charges`` and ``POST /v1/refunds``, idempotent by the
  ``Idempotency-Key`` header: the same key always gets the first answer, and a
  twin arriving while the first is still being processed gets 409;
* configurable latency (``--latency-ms``, with ``--jitter-ms``), a random
  failure rate answered with 503 (``--failure-rate``), and declines for the
  tokens in ``--decline-tokens`` answered with 402;
* a signed callback to the charge's ``callback_url`` after each decision:
  header ``Provider-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``;
* ``GET /v1/requests/<idempotency key>`` tells what became of a request
  (so a client that timed out can find out without charging again);
* ``GET /v1/charges`` lists what was charged, and ``POST /v1/control`` changes
  latency, failure rate or an outage flag at run time (``"reset": true`` also
  forgets every key, charge and counter), so tests can observe and steer it.

Run: ``python -m simulators.payment_provider --port 8100``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import random
import secrets
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_DECLINE_TOKENS = ("tok_declined", "tok_insufficient_funds", "tok_stolen_card")
SIGNATURE_HEADER = "Provider-Signature"
REQUEST_ID_HEADER = "X-Request-ID"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass
class ProviderState:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    failure_rate: float = 0.0
    outage: bool = False
    decline_tokens: set[str] = field(default_factory=lambda: set(DEFAULT_DECLINE_TOKENS))
    webhook_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    api_key: str | None = None
    random: random.Random = field(default_factory=random.Random)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # idempotency key -> (status, body) once decided; None while in flight
    answers: dict[str, tuple[int, dict[str, Any]] | None] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests_seen: int = 0
    # The X-Request-ID of each charge or refund request, in order (the merchant's
    # request id: the callback about that request sends it back).
    request_ids: list[str] = field(default_factory=list)


class ProviderHandler(BaseHTTPRequestHandler):
    server: ProviderServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests and benchmarks read state over HTTP instead

    # -- plumbing -------------------------------------------------------------
    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    # -- routes ---------------------------------------------------------------
    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/v1/charges":
            with state.lock:
                charges = list(state.charges.values())
                refunds = list(state.refunds.values())
                seen = state.requests_seen
                request_ids = list(state.request_ids)
            self._send(
                200,
                {
                    "charges": charges,
                    "refunds": refunds,
                    "requests_seen": seen,
                    "request_ids": request_ids,
                },
            )
        elif self.path.startswith("/v1/requests/"):
            self._lookup(self.path.removeprefix("/v1/requests/"))
        elif self.path == "/healthz":
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": "not_found"})

    def _lookup(self, key: str) -> None:
        """What became of the request sent with this idempotency key, without re-sending it."""
        state = self.server.state
        with state.lock:
            known = key in state.answers
            answer = state.answers.get(key)
            outage = state.outage
        if outage:
            self._send(503, {"error": "temporarily_unavailable"})
        elif not known:
            self._send(404, {"error": "no_such_request"})
        elif answer is None:
            self._send(409, {"error": "request_in_progress"})
        else:
            status, payload = answer
            self._send(200, {"status_code": status, "response": payload})

    def do_POST(self) -> None:
        state = self.server.state
        data = self._body()
        if data is None:
            self._send(400, {"error": "malformed_json"})
            return
        if self.path == "/v1/control":
            self._control(data)
            return
        if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._send(401, {"error": "unauthorized"})
            return
        if self.path not in ("/v1/charges", "/v1/refunds"):
            self._send(404, {"error": "not_found"})
            return
        key = self.headers.get("Idempotency-Key")
        if not key:
            self._send(400, {"error": "idempotency_key_required"})
            return
        request_id = self.headers.get(REQUEST_ID_HEADER)
        with state.lock:
            state.requests_seen += 1
            if request_id:
                state.request_ids.append(request_id)
            outage = state.outage
        self._pause()
        if outage or state.random.random() < state.failure_rate:
            # Fails before anything is recorded, as a provider's load balancer would.
            self._send(503, {"error": "temporarily_unavailable"})
            return
        with state.lock:
            if key in state.answers:
                answer = state.answers[key]
                if answer is None:
                    conflict = True
                else:
                    conflict = False
                    status, payload = answer
            else:
                state.answers[key] = None
                conflict, answer = False, None
        if conflict:
            self._send(409, {"error": "request_in_progress"})
            return
        if answer is not None:
            self._send(status, {**payload, "replayed": True})
            return
        status, payload = (self._charge if self.path == "/v1/charges" else self._refund)(data)
        with state.lock:
            if status >= 500 or status == 400:
                del state.answers[key]  # not a decision: the key may be used again
            else:
                state.answers[key] = (status, payload)
        self._send(status, payload)
        callback = data.get("callback_url")
        if callback and status in (201, 402):
            threading.Thread(
                target=self._callback, args=(callback, payload, request_id), daemon=True
            ).start()

    # -- behaviour ------------------------------------------------------------
    def _pause(self) -> None:
        state = self.server.state
        delay = state.latency_ms + state.random.uniform(-state.jitter_ms, state.jitter_ms)
        if delay > 0:
            time.sleep(delay / 1000)

    def _charge(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        try:
            amount = Decimal(str(data["amount"]))
        except (KeyError, InvalidOperation):
            return 400, {"error": "invalid_amount"}
        token = str(data.get("token", ""))
        charge_id = f"ch_{uuid.uuid4().hex[:24]}"
        base = {
            "id": charge_id,
            "amount": str(amount),
            "currency": str(data.get("currency", "EUR")),
            "reference": str(data.get("reference", "")),
        }
        if token in state.decline_tokens:
            return 402, {**base, "status": "declined", "decline_code": token.removeprefix("tok_")}
        charge = {**base, "status": "succeeded", "created": time.time()}
        with state.lock:
            state.charges[charge_id] = charge
        return 201, charge

    def _refund(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        charge_id = str(data.get("charge_id", ""))
        with state.lock:
            charge = state.charges.get(charge_id)
            if charge is None:
                return 404, {"error": "no_such_charge"}
            refund = {
                "id": f"re_{uuid.uuid4().hex[:24]}",
                "charge_id": charge_id,
                "amount": str(data.get("amount", charge["amount"])),
                "status": "succeeded",
            }
            state.refunds[refund["id"]] = refund
            charge["refunded"] = True
        return 201, refund

    def _callback(self, url: str, payload: dict[str, Any], request_id: str | None) -> None:
        state = self.server.state
        event = {
            "event_id": f"evt_{uuid.uuid4().hex[:24]}",
            "type": "charge.succeeded"
            if payload.get("status") == "succeeded"
            else "charge.declined",
            "data": payload,
        }
        body = json.dumps(event).encode()
        request = urllib.request.Request(  # noqa: S310 - URL comes from the local caller
            url,
            data=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(state.webhook_secret, int(time.time()), body),
                **({REQUEST_ID_HEADER: request_id} if request_id else {}),
            },
        )
        # A real provider would retry a failed callback; the merchant's own task
        # result does not depend on it, so a lost callback is harmless here.
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=5).close()  # noqa: S310

    def _control(self, data: dict[str, Any]) -> None:
        state = self.server.state
        with state.lock:
            if "latency_ms" in data:
                state.latency_ms = float(data["latency_ms"])
            if "jitter_ms" in data:
                state.jitter_ms = float(data["jitter_ms"])
            if "failure_rate" in data:
                state.failure_rate = float(data["failure_rate"])
            if "outage" in data:
                state.outage = bool(data["outage"])
            if data.get("reset"):
                # Forget every answer, charge and counter: a clean slate per test.
                state.answers.clear()
                state.charges.clear()
                state.refunds.clear()
                state.requests_seen = 0
                state.request_ids.clear()
        self._send(
            200,
            {
                "latency_ms": state.latency_ms,
                "failure_rate": state.failure_rate,
                "outage": state.outage,
            },
        )


class ProviderServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: ProviderState) -> None:
        super().__init__(address, ProviderHandler)
        self.state = state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--jitter-ms", type=float, default=5.0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--decline-tokens", default=",".join(DEFAULT_DECLINE_TOKENS))
    # From the environment, as the app reads it (`make run` sets it), not the command
    # line, where other users could read it; a secret of its own otherwise.
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("PAYMENT_WEBHOOK_SECRET") or secrets.token_urlsafe(32),
    )
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    state = ProviderState(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        failure_rate=args.failure_rate,
        decline_tokens={token for token in args.decline_tokens.split(",") if token},
        webhook_secret=args.webhook_secret,
        api_key=args.api_key,
        random=random.Random(args.seed),  # noqa: S311 - simulated failures, not security
    )
    server = ProviderServer((args.host, args.port), state)
    print(f"payment provider simulator on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
