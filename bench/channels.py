"""Notification channels: e-mails/s into an SMTP sink, pushes/s into the push simulator.

    make bench SCENARIO=email      # python -m bench.email [--messages 20000] [--workers 2]
                                   #   [--sink-processes 2]
    make bench SCENARIO=push       # python -m bench.push  [--messages 50000] [--workers 2]

In the same run, against the same server:

* **e-mail**: the sink is ``simulators/smtp_sink.py`` (aiosmtpd, PIPELINING
  offered) in ``--sink-processes`` processes of its own on one port, answering
  5 % of messages 451; the bare client and Emporium use the same sink. Emporium:
  the production profile on a fresh PostgreSQL database, Redis and RabbitMQ;
  ``--messages`` users, one e-mail delivery each stored by
  ``channel_deliveries_enqueue`` and sent by ``--workers`` Celery worker
  processes (queue ``email``): batches of 200 rendered from the templates
  (text + HTML), one SMTP session per batch, 451s retried with backoff
  through RabbitMQ. The clock runs from the enqueue call to the last row
  recorded sent. Reference (**bare**): ``--workers`` processes, each one
  ``smtplib.SMTP`` connection calling ``sendmail`` with a prebuilt message,
  repeating a 451 at once.
* **push**: the simulator is ``simulators/push`` in a process of its own,
  answering 2 % of requests 503/429 (Retry-After: 1) and 1 % of tokens
  UNREGISTERED. Emporium: one device token per user, one push delivery
  each, sent by the workers (queue ``push``), ``CONCURRENCY`` (32) requests
  in flight each over kept-alive connections; dead tokens removed.
  Reference (**bare**): ``--workers`` processes, each as many kept-alive
  connections on one uvloop posting the same FCM bodies written by hand,
  repeating a 503/429 at once.

Printed: messages/s of both and their ratio; Emporium's rate until 95 % of
the rows had finished (by ``finished_at``: the steady rate without the
retries' backoff tail); the server's count of distinct messages received,
duplicates (must be 0) and lost (must be 0).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from bench import common

DATABASE = "emporium_bench_channels"


# -- the servers -------------------------------------------------------------------------


def start_server(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(command, cwd=common.ROOT, stdout=handle, stderr=subprocess.STDOUT)


def http_json(url: str, method: str = "GET") -> dict[str, Any]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


# -- the bare references -------------------------------------------------------------------


def _bare_smtp(port: int, first: int, count: int, results: Any) -> None:
    sent = 0
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    for number in range(first, first + count):
        message = EmailMessage()
        message["From"] = "shop@bench.example"
        message["To"] = f"user{number}@bench.example"
        message["Subject"] = "Your order is paid"
        message["Message-ID"] = f"<bare.{number}@bench.example>"
        message.set_content("Order 42 is paid and being packed.\n")
        message.add_alternative("<p>Order 42 is paid and being packed.</p>", subtype="html")
        data = message.as_bytes()
        while True:
            try:
                client.sendmail("shop@bench.example", [message["To"]], data)
                sent += 1
                break
            except smtplib.SMTPDataError as error:
                if error.smtp_code // 100 != 4:
                    raise
    client.quit()
    results.put(sent)


def _bare_push(url: str, first: int, count: int, concurrency: int, results: Any) -> None:
    """``concurrency`` keep-alive connections on one uvloop, requests written by hand."""
    import asyncio

    import httptools
    import uvloop

    port = int(url.rsplit(":", 1)[1])
    head = (
        "POST /v1/projects/bench/messages:send HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n"
    )

    class Connection(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.waiter: asyncio.Future[int] | None = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            waiter, self.waiter = self.waiter, None
            if waiter is not None:
                waiter.set_result(self.parser.get_status_code())

        async def post(self, body: bytes) -> int:
            self.waiter = asyncio.get_running_loop().create_future()
            self.transport.write(head.format(len(body)).encode() + body)
            return await self.waiter

    numbers = iter(range(first, first + count))

    async def send_all() -> None:
        loop = asyncio.get_running_loop()
        connections = [
            (await loop.create_connection(Connection, "127.0.0.1", port))[1]
            for _ in range(concurrency)
        ]
        for connection in connections:
            connection.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )

        async def one_connection(connection: Connection) -> None:
            for number in numbers:
                body = json.dumps(
                    {
                        "message": {
                            "token": f"bench-token-{number:08d}-fcm",
                            "notification": {"title": "Paid", "body": "Order 42 is paid."},
                            "data": {"delivery_id": f"bare-{number}"},
                        }
                    }
                ).encode()
                while await connection.post(body) in (429, 503):
                    pass

        await asyncio.gather(*(one_connection(connection) for connection in connections))

    uvloop.run(send_all())
    results.put(count)


def push_concurrency() -> int:
    from django.conf import settings

    channels: dict[str, dict[str, Any]] = settings.NOTIFICATION_CHANNELS
    return int(channels["push"]["CONCURRENCY"])


def run_bare(target: Any, arguments: list[tuple[Any, ...]]) -> dict[str, Any]:
    results: Any = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=target, args=(*args, results)) for args in arguments
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    total = sum(results.get(timeout=600) for _ in processes)
    seconds = time.perf_counter() - started
    for process in processes:
        process.join()
    return {"messages": total, "seconds": seconds, "per_second": total / seconds}


# -- Emporium ---------------------------------------------------------------------------------


def django_prepare(env: dict[str, str], messages: int, channel: str) -> None:
    os.environ.update(env)
    import django

    django.setup()
    from emporium.accounts.models import User
    from emporium.notifications.channels.models import DeviceToken

    for start in range(0, messages, 5000):
        users = [
            User(username=f"bench{n}", email=f"user{n}@bench.example", password="!")  # noqa: S106 - unusable
            for n in range(start, min(messages, start + 5000))
        ]
        User.objects.bulk_create(users)
    if channel == "push":
        ids = list(User.objects.order_by("id").values_list("id", flat=True))
        for start in range(0, len(ids), 5000):
            DeviceToken.objects.bulk_create(
                DeviceToken(user_id=user_id, platform="android", token=f"bench-token-{n:08d}-fcm")
                for n, user_id in enumerate(ids[start : start + 5000], start=start)
            )


def start_workers(
    env: dict[str, str], queue: str, workers: int, log: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue,
        "--pool", "prefork", "--concurrency", str(workers), "--loglevel", "WARNING",
        "--without-heartbeat", "--without-mingle", "--without-gossip",
        "--hostname", f"bench-channels-{os.getpid()}@%h",
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        cwd=common.ROOT,
        env={**env, "METRICS_PORT": "0"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def purge(broker_url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as connection:
        channel: Any = connection.channel()
        try:
            channel.queue_purge(queue)
        except connection.channel_errors:
            pass
        finally:
            channel.close()


def run_emporium(channel: str, messages: int, timeout: float) -> dict[str, Any]:
    from django.db.models import Count
    from django.utils import timezone

    from emporium.accounts.models import User
    from emporium.notifications.channels.models import Delivery
    from emporium.notifications.channels.services import (
        DeliveryRequest,
        channel_deliveries_enqueue,
    )

    ids = list(User.objects.order_by("id").values_list("id", flat=True))
    requests = [
        DeliveryRequest(
            recipient_id=user_id,
            kind="order.paid",
            channel=channel,
            title="Your order is paid",
            body="Order 42 is paid and being packed.",
            data={"order_id": 42, "url": "https://shop.example/orders/42"},
            dedup_key=f"bench:{user_id}",
            critical=False,
        )
        for user_id in ids
    ]
    started = time.perf_counter()
    started_at = timezone.now()
    stored = 0
    for start in range(0, len(requests), 5000):
        stored += channel_deliveries_enqueue(requests=requests[start : start + 5000])
    enqueued = time.perf_counter() - started
    deadline = time.monotonic() + timeout
    # Unfinished rows only: the partial index on them keeps the poll off the workers' CPU.
    unfinished = Delivery.objects.filter(status__in=["pending", "claimed"])
    while time.monotonic() < deadline and unfinished.exists():
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    statuses = dict(Delivery.objects.values_list("status").annotate(count=Count("id")).order_by())
    attempts = dict(Delivery.objects.values_list("attempts").annotate(count=Count("id")).order_by())
    # The steady rate without the retry tail: when 95 % of the rows had finished.
    finished = sorted(
        at for at in Delivery.objects.values_list("finished_at", flat=True) if at is not None
    )
    p95 = (finished[int(len(finished) * 0.95) - 1] - started_at).total_seconds() if finished else 0
    return {
        "messages": stored,
        "seconds": seconds,
        "p95_seconds": p95,
        "p95_per_second": 0.95 * stored / p95 if p95 > 0 else 0.0,
        "enqueue_seconds": enqueued,
        "per_second": stored / seconds,
        "statuses": statuses,
        "attempts": attempts,
    }


def main(channel: str, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000 if channel == "email" else 50000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument(
        "--sink-processes", type=int, default=2, help="SMTP sink processes (e-mail; one port)"
    )
    options = parser.parse_args(argv)
    logs = common.RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port, stats_port = common.free_port(), common.free_port()
    env = common.production_env(
        common.recreate_database(DATABASE),
        EMAIL_URL=f"smtp://127.0.0.1:{port}",
        PUSH_PROVIDER_URL=f"http://127.0.0.1:{port}",
        PUSH_PROJECT_ID="bench",
        DEFAULT_FROM_EMAIL="shop@bench.example",
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=common.ROOT, env=env, check=True
    )
    django_prepare(env, options.messages, channel)
    queue = channel
    purge(env["BROKER_URL"], queue)
    if channel == "email":
        server = start_server(
            [
                sys.executable,
                "-m",
                "simulators.smtp_sink",
                "--port",
                str(port),
                "--stats-port",
                str(stats_port),
                "--transient-rate",
                "0.05",
                "--seed",
                "1",
                "--processes",
                str(options.sink_processes),
            ],
            logs / "smtp-sink.log",
        )
        stats_url = f"http://127.0.0.1:{stats_port}/stats"
    else:
        server = start_server(
            [
                sys.executable,
                "-m",
                "simulators.push",
                "--port",
                str(port),
                "--failure-rate",
                "0.02",
                "--dead-rate",
                "0.01",
                "--retry-after",
                "1",
                "--seed",
                "1",
            ],
            logs / "push-simulator.log",
        )
        stats_url = f"http://127.0.0.1:{port}/v1/stats"
    workers: subprocess.Popen[bytes] | None = None
    try:
        wait_port(stats_port if channel == "email" else port)
        share = options.messages // options.workers
        if True:  # the caller holds the bench lock (flock /tmp/emporium-bench.lock)
            if channel == "email":
                bare = run_bare(
                    _bare_smtp, [(port, n * share, share) for n in range(options.workers)]
                )
            else:
                bare = run_bare(
                    _bare_push,
                    [
                        (f"http://127.0.0.1:{port}", n * share, share, push_concurrency())
                        for n in range(options.workers)
                    ],
                )
            bare["server"] = http_json(stats_url)
            reset_url = stats_url if channel == "email" else f"http://127.0.0.1:{port}/v1/control"
            if channel == "email":
                http_json(reset_url, method="POST")
            else:
                request = urllib.request.Request(
                    reset_url, method="POST", data=json.dumps({"reset": True}).encode()
                )
                urllib.request.urlopen(request, timeout=10).close()
            workers = start_workers(env, queue, options.workers, logs / f"{channel}-workers.log")
            time.sleep(4)  # the workers connect and declare their queues
            cpu_before = common.process_cpu()
            emporium = run_emporium(channel, options.messages, options.timeout)
            cpu = common.cpu_spent(
                cpu_before,
                common.process_cpu(),
                {
                    "workers": lambda command: "celery" in command and "worker" in command,
                    "server": lambda command: "simulators." in command,
                    "postgresql": common.postgres_backend(DATABASE),
                },
            )
            emporium["server"] = http_json(stats_url)
            emporium["cpu"] = cpu
    finally:
        if workers is not None:
            common.stop(workers)
        common.stop(server)
    report(channel, options, emporium, bare)


def report(channel: str, options: Any, emporium: dict[str, Any], bare: dict[str, Any]) -> None:
    server = emporium["server"]
    sent = emporium["statuses"].get("sent", 0)
    lost = emporium["messages"] - sent - emporium["statuses"].get("skipped", 0)
    print(f"\n{channel}: {emporium['messages']} messages, {options.workers} worker processes")
    print(
        f"  Emporium  {emporium['per_second']:>9.0f}/s  ({emporium['seconds']:.1f} s, "
        f"enqueue {emporium['enqueue_seconds']:.1f} s)"
    )
    print(
        f"  Emporium  {emporium['p95_per_second']:>9.0f}/s  until 95 % had finished "
        f"({emporium['p95_seconds']:.1f} s; the rest is the retries' backoff)"
    )
    print(f"  bare      {bare['per_second']:>9.0f}/s  ({bare['seconds']:.1f} s)")
    print(f"  ratio     {emporium['per_second'] / bare['per_second']:>9.2f}")
    print(f"  statuses {emporium['statuses']}  attempts {emporium['attempts']}")
    print(
        f"  server: distinct {server['distinct']}, duplicates {server['duplicates']}, "
        f"transient answers {server['transient']}"
        + (f", unregistered {server['unregistered']}" if channel == "push" else "")
    )
    print(f"  not delivered (lost) {lost}")
    print(f"  cpu seconds {emporium['cpu']}")
    path = common.save(channel, {"options": vars(options), "emporium": emporium, "bare": bare})
    print(f"  saved {path.relative_to(common.ROOT)}")
