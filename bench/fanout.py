"""WebSocket fan-out: broadcast deliveries/s and latency at 5,000 and 10,000 connections.

    make bench SCENARIO=fanout
    python -m bench.fanout --connections 5000 10000 --messages 30 --interval 0.1

For each connection count, in the same run:

* **Emporium**: ``uvicorn config.asgi:application`` (production settings,
  PostgreSQL, Redis), every client authenticated with its own JWT on
  ``/ws/notifications/``; each broadcast is one ``PUBLISH`` to the
  ``broadcast`` group's Redis channel, the way ``emporium.realtime.broadcast``
  sends it.
* **bare**: ``bench/ws_bare.py``, websockets' own ``broadcast()`` in one
  process, fed the same bytes over a publisher socket.

Load clients (``bench/ws_client.py``, asyncio + the websockets client, a few
processes) open the connections, then the driver sends ``--messages``
broadcasts ``--interval`` seconds apart, each stamped with its send time.
Delivery rate = deliveries received / (last receive - first send); latency =
receive time - stamp, over every delivery. Server memory per connection is
the servers' RSS after connecting minus before, divided by the connections.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from websockets.sync.client import connect

from bench import common
from emporium.realtime.transport import channel_for

DATABASE = "emporium_bench_fanout"
USERS = 200


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn's workers)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        pids.extend(int(child) for child in children)
    return total


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def issue_tokens(env: dict[str, str], path: Path) -> None:
    script = (
        "from emporium.accounts.models import User\n"
        "from rest_framework_simplejwt.tokens import AccessToken\n"
        "users = [User(username=f'fan{i}', email=f'fan{i}@bench.example')\n"
        f"         for i in range({USERS})]\n"
        "User.objects.bulk_create(users)\n"
        f"open({str(path)!r}, 'w').write('\\n'.join(str(AccessToken.for_user(u)) "
        "for u in User.objects.filter(username__startswith='fan')))\n"
    )
    common.manage(env, "shell", "-v0", "-c", script)


def load(
    *,
    url: str,
    tokens: Path,
    connections: int,
    clients: int,
    messages: int,
    interval: float,
    publish: Any,
    server_pid: int,
) -> dict[str, Any]:
    share = [
        connections // clients + (1 if i < connections % clients else 0) for i in range(clients)
    ]
    before = rss_kib(server_pid)
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.ws_client",
                "--url",
                url,
                "--tokens",
                str(tokens),
                "--connections",
                str(count),
                "--messages",
                str(messages),
                "--deadline",
                str(messages * interval + 60),
            ],
            cwd=common.ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for count in share
    ]
    for process in processes:
        line = process.stdout.readline().strip() if process.stdout else ""
        if line != "READY":
            raise RuntimeError(f"a load client failed to connect: {line!r}")
    time.sleep(1.0)  # let the last subscriptions and allocations settle
    after = rss_kib(server_pid)
    first_send = time.time()
    for seq in range(messages):
        publish(json.dumps({"type": "bench", "seq": seq, "sent": time.time(), "pad": "x" * 64}))
        time.sleep(interval)
    reports = []
    for process in processes:
        out, _ = process.communicate(timeout=messages * interval + 120)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    latencies = sorted(value for report in reports for value in report["latencies"])
    received = sum(report["received"] for report in reports)
    last = max(report["last_receive"] for report in reports)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "connections": connections,
        "expected": connections * messages,
        "received": received,
        "deliveries_per_s": received / (last - first_send) if last > first_send else 0.0,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "rss_delta_kib": after - before,
        "kib_per_connection": (after - before) / connections,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, nargs="+", default=[5000, 10000])
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--clients", type=int, default=3, help="load client processes")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--ws", default="websockets-sansio", help="uvicorn --ws implementation")
    args = parser.parse_args()

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers
    if hard < max(args.connections) + 1000:
        raise SystemExit(f"ulimit -Hn is {hard}; raise it above the connection count")

    database_url = common.recreate_database(DATABASE)
    env = common.production_env(database_url, DATABASE_CONN_MAX_AGE="600")
    common.manage(env, "migrate", "--no-input", "-v0")
    work = Path(common.RESULTS)
    work.mkdir(parents=True, exist_ok=True)
    tokens = work / "fanout-tokens.txt"
    issue_tokens(env, tokens)
    redis_url = env["REDIS_URL"]
    publisher = redis.Redis.from_url(redis_url)
    channel = channel_for(redis_url, "broadcast")

    rows: list[dict[str, Any]] = []
    with common.bench_lock():
        for connections in args.connections:
            port = common.free_port()
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "config.asgi:application",
                    "--port",
                    str(port),
                    "--workers",
                    str(args.workers),
                    "--ws",
                    args.ws,
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--backlog",
                    "4096",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=common.ROOT,
                env=env,
            )
            try:
                wait_port(port)
                time.sleep(1.0)
                ours = load(
                    url=f"ws://127.0.0.1:{port}/ws/notifications/",
                    tokens=tokens,
                    connections=connections,
                    clients=args.clients,
                    messages=args.messages,
                    interval=args.interval,
                    publish=lambda text: publisher.publish(channel, text),
                    server_pid=server.pid,
                )
            finally:
                common.stop(server)
            port = common.free_port()
            bare_server = subprocess.Popen(
                [sys.executable, "-m", "bench.ws_bare", "--port", str(port)], cwd=common.ROOT
            )
            try:
                wait_port(port)
                with connect(
                    f"ws://127.0.0.1:{port}/publish",
                    subprotocols=["emporium.jwt"],  # type: ignore[list-item]
                ) as feed:
                    bare = load(
                        url=f"ws://127.0.0.1:{port}/ws/notifications/",
                        tokens=tokens,
                        connections=connections,
                        clients=args.clients,
                        messages=args.messages,
                        interval=args.interval,
                        publish=feed.send,
                        server_pid=bare_server.pid,
                    )
            finally:
                common.stop(bare_server)
            ratio = ours["deliveries_per_s"] / bare["deliveries_per_s"]
            rows.append({"emporium": ours, "bare": bare, "ratio": ratio})
            print(
                f"{connections} connections: emporium {ours['deliveries_per_s']:,.0f}/s "
                f"(p50 {ours['p50_ms']:.0f} ms, p99 {ours['p99_ms']:.0f} ms, "
                f"{ours['received']}/{ours['expected']} delivered, "
                f"{ours['kib_per_connection']:.1f} KiB/conn)\n    bare "
                f"{bare['deliveries_per_s']:,.0f}/s (p50 {bare['p50_ms']:.0f} ms, "
                f"p99 {bare['p99_ms']:.0f} ms, "
                f"{bare['received']}/{bare['expected']}, "
                f"{bare['kib_per_connection']:.1f} KiB/conn) "
                f"| ratio {ratio:.2f}",
                flush=True,
            )
    common.psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    tokens.unlink(missing_ok=True)
    path = common.save(
        "fanout",
        {"arguments": vars(args), "rows": rows},
    )
    print(f"saved {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
