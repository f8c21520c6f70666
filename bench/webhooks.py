"""Outgoing webhooks: signed deliveries/s to a local receiver with 10 % failures, 0 lost.

    make bench SCENARIO=webhooks
    python -m bench.webhooks [--events 5000] [--aggregates 500] [--concurrency 16]

In the same run, against the same kind of receiver (``http.server`` in a
process of its own on 127.0.0.1, HTTP/1.1 keep-alive, checking every
``Emporium-Signature`` with ``signature_verify`` and answering 401 to a bad
one; the first request for one event in ten, picked by its id, is answered
503 on purpose):

* **Emporium**: the production profile (PostgreSQL, Redis, RabbitMQ) with a
  fresh database. ``--events`` outbox events of ``--aggregates`` orders, one
  subscription; the deliveries are created by the outbox handler's own
  function, in one transaction, and their ``webhooks.deliver`` tasks queued;
  one Celery worker (threads pool, ``--concurrency``) sends them: claim,
  sign, POST through the pooled client and the endpoint's breaker (state in
  Redis), record the attempt. A 503 is retried with the backoff (its
  ``countdown`` waits in RabbitMQ) and the order per aggregate is kept. The
  clock runs from the first task queued to the last delivery recorded.
* **bare**: ``--concurrency`` threads with one httpx client post the same
  signed bodies straight to the receiver, repeating a 503 at once.

Printed: deliveries/s of both, their ratio, and the receiver's count of
distinct events delivered (must equal ``--events``: 0 lost) and of requests
with a bad signature (must be 0).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench import common

DATABASE = "emporium_bench_webhooks"
SETTINGS = "bench.webhooks_settings"
FAILURE_SHARE = 10  # one event in this many fails its first request


def failing_first(event_id: str) -> bool:
    return int(hashlib.sha256(event_id.encode()).hexdigest(), 16) % FAILURE_SHARE == 0


# -- the receiver (a process of its own) -----------------------------------------------


def receiver_serve(port: int, secret: str) -> None:
    from emporium.integrations.webhooks.signing import SIGNATURE_HEADER, signature_verify

    lock = threading.Lock()
    seen: set[str] = set()
    failed_once: set[str] = set()
    counts = {"requests": 0, "bad_signatures": 0, "duplicates": 0, "failed_on_purpose": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with lock:
                stats = {**counts, "delivered": len(seen)}
            self._answer(200, json.dumps(stats).encode())

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            header = self.headers.get(SIGNATURE_HEADER, "")
            event_id = self.headers.get("Emporium-Event-Id", "")
            with lock:
                counts["requests"] += 1
            if not signature_verify(header=header, body=body, secret=secret):
                with lock:
                    counts["bad_signatures"] += 1
                self._answer(401, b'{"error": "signature"}')
                return
            with lock:
                fail = failing_first(event_id) and event_id not in failed_once
                if fail:
                    failed_once.add(event_id)
                    counts["failed_on_purpose"] += 1
                elif event_id in seen:
                    counts["duplicates"] += 1
                else:
                    seen.add(event_id)
            if fail:
                self._answer(503, b'{"error": "on purpose"}')
            else:
                self._answer(200, b'{"ok": true}')

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    server.serve_forever()


class ReceiverProcess:
    def __init__(self, secret: str, port: int | None = None) -> None:
        self.port = port or common.free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.webhooks", "--receiver", str(self.port), secret],
            cwd=common.ROOT,
        )
        common.wait_http(self.url)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            return dict(json.loads(response.read()))

    def stop(self) -> None:
        common.stop(self.process)


# -- the Emporium side (run in a process with the bench settings) -----------------------


def emporium_prepare(events: int, aggregates: int, receiver_url: str) -> str:
    """Creates the subscription and the outbox events; prints the secret."""
    import django

    django.setup()
    from emporium.integrations.models import OutboxEvent
    from emporium.integrations.webhooks import services

    issued = services.subscription_create(url=receiver_url, event_types=["order.paid"])
    OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(
                id=uuid.uuid4(),
                event_type="order.paid",
                aggregate_type="order",
                aggregate_id=str(number % aggregates),
                payload={"order_id": number % aggregates, "sequence": number, "total": "19.90"},
                correlation={"request_id": uuid.uuid4().hex},
            )
            for number in range(events)
        ],
        batch_size=1000,
    )
    return issued.secret


def emporium_start() -> None:
    """Creates every delivery as the outbox handler does and queues their tasks."""
    import django

    django.setup()
    from django.db import transaction

    from emporium.integrations.models import OutboxEvent
    from emporium.integrations.webhooks.tasks import _deliveries_create

    started = time.time()
    with transaction.atomic():
        for event in OutboxEvent.objects.order_by("created_at", "id").iterator(chunk_size=1000):
            _deliveries_create(event)
    print(json.dumps({"started": started}), flush=True)


def emporium_wait(events: int, timeout: float) -> None:
    import django

    django.setup()
    from django.db.models import Max

    from emporium.integrations.webhooks.models import WebhookDelivery

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = WebhookDelivery.objects.exclude(status="pending").count()
        if done >= events:
            break
        time.sleep(0.2)
    summary = WebhookDelivery.objects.aggregate(last=Max("delivered_at"))
    statuses = {
        status: WebhookDelivery.objects.filter(status=status).count()
        for status in ("pending", "delivered", "failed")
    }
    last = summary["last"].timestamp() if summary["last"] else None
    print(json.dumps({"last": last, "statuses": statuses}), flush=True)


def django_step(env: dict[str, str], *args: str) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.webhooks", *args],
        cwd=common.ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def run_emporium(events: int, aggregates: int, concurrency: int) -> dict[str, Any]:
    env = common.production_env(common.recreate_database(DATABASE), DJANGO_SETTINGS_MODULE=SETTINGS)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=common.ROOT, env=env, check=True
    )
    broker_reachable(env["BROKER_URL"])
    redis_flush_breakers(env["REDIS_URL"])
    port = common.free_port()
    url = f"http://127.0.0.1:{port}/hooks"
    # The subscription's secret is made by Emporium; the receiver is started with it.
    secret = django_step(env, "--prepare", str(events), str(aggregates), url)["secret"]
    receiver = ReceiverProcess(secret, port=port)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            # Every work queue, as `make worker` consumes them: RabbitMQ's delayed delivery
            # (which holds the retries' countdowns) is set up only when all of them bind.
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--hostname",
            f"bench-webhooks-{os.getpid()}@%h",
        ],
        cwd=common.ROOT,
        env={
            **env,
            "METRICS_PORT": "0",
            # A connection for each thread: none waits for the pool.
            "DATABASE_POOL_MAX_SIZE": str(concurrency + 2),
            "LOG_LEVEL": os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
        },
    )
    try:
        time.sleep(3)  # the worker connects and declares its queues
        cpu_before = common.process_cpu()
        started = django_step(env, "--start")["started"]
        finished = django_step(env, "--wait", str(events), "300")
        cpu = common.cpu_spent(
            cpu_before,
            common.process_cpu(),
            {
                "worker": lambda command: "celery" in command and "worker" in command,
                "receiver": lambda command: "--receiver" in command,
                "postgresql": common.postgres_backend(DATABASE),
            },
        )
        stats = receiver.stats()
    finally:
        common.stop(worker)
        receiver.stop()
    seconds = (finished["last"] or time.time()) - started
    return {
        "deliveries": events,
        "seconds": seconds,
        "per_second": events / seconds,
        "statuses": finished["statuses"],
        "receiver": stats,
        "cpu": cpu,
    }


def broker_reachable(broker_url: str) -> None:
    from kombu import Connection

    try:
        with Connection(broker_url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        raise SystemExit(f"cannot reach {broker_url} ({error}); set BENCH_BROKER_URL") from error


def redis_flush_breakers(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("emporium:webhook:*"):
        client.delete(key)


# -- the bare reference -------------------------------------------------------------------


def run_bare(events: int, aggregates: int, concurrency: int) -> dict[str, Any]:
    from emporium.integrations.webhooks.signing import SIGNATURE_HEADER, signature_header

    secret = "whsec_" + uuid.uuid4().hex
    receiver = ReceiverProcess(secret)
    bodies = []
    for number in range(events):
        event_id = str(uuid.uuid4())
        body = {
            "id": event_id,
            "type": "order.paid",
            "created_at": "2026-01-01T00:00:00+00:00",
            "aggregate": {"type": "order", "id": str(number % aggregates)},
            "data": {"order_id": number % aggregates, "sequence": number, "total": "19.90"},
        }
        bodies.append((event_id, json.dumps(body, separators=(",", ":"), sort_keys=True)))

    import httpx

    client = httpx.Client(
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        timeout=httpx.Timeout(10.0, connect=3.0),
        trust_env=False,
    )

    def post(item: tuple[str, str]) -> int:
        event_id, text = item
        body = text.encode()
        while True:
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature_header(
                    secrets=[secret], timestamp=int(time.time()), body=body
                ),
                "Emporium-Event-Id": event_id,
            }
            status = client.post(receiver.url, content=body, headers=headers).status_code
            if status == 200:
                return status

    try:
        started = time.time()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, bodies))
        seconds = time.time() - started
        stats = receiver.stats()
    finally:
        client.close()
        receiver.stop()
    return {
        "deliveries": events,
        "seconds": seconds,
        "per_second": events / seconds,
        "receiver": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--aggregates", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--receiver", nargs=2, metavar=("PORT", "SECRET"))
    parser.add_argument("--prepare", nargs=3, metavar=("EVENTS", "AGGREGATES", "URL"))
    parser.add_argument("--start", action="store_true")
    parser.add_argument("--wait", nargs=2, metavar=("EVENTS", "TIMEOUT"))
    args = parser.parse_args()
    if args.receiver:
        receiver_serve(int(args.receiver[0]), args.receiver[1])
        return
    if args.prepare:
        secret = emporium_prepare(int(args.prepare[0]), int(args.prepare[1]), args.prepare[2])
        print(json.dumps({"secret": secret}), flush=True)
        return
    if args.start:
        emporium_start()
        return
    if args.wait:
        emporium_wait(int(args.wait[0]), float(args.wait[1]))
        return

    bare = run_bare(args.events, args.aggregates, args.concurrency)
    emporium = run_emporium(args.events, args.aggregates, args.concurrency)
    lost = args.events - emporium["receiver"]["delivered"]
    print(
        f"webhooks: {args.events} events, {args.aggregates} orders, 1 in {FAILURE_SHARE} "
        f"failing its first request, concurrency {args.concurrency}"
    )
    print(
        f"  Emporium (worker, signed, retried): {emporium['per_second']:8.0f} deliveries/s "
        f"({emporium['seconds']:.1f} s; {emporium['statuses']}; receiver {emporium['receiver']})"
    )
    print(
        f"  bare httpx to the same receiver:    {bare['per_second']:8.0f} deliveries/s "
        f"({bare['seconds']:.1f} s; receiver {bare['receiver']})"
    )
    print(
        f"  ratio Emporium / bare: {emporium['per_second'] / bare['per_second']:.2f}; "
        f"lost: {lost}; bad signatures: {emporium['receiver']['bad_signatures']}"
    )
    path = common.save(
        "webhooks",
        {"args": vars(args), "emporium": emporium, "bare": bare, "lost": lost},
    )
    print(f"  saved {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
