"""One broadcast to 1,000,000 users, end to end, beside a raw COPY of the same rows.

    make bench SCENARIO=broadcast   # python -m bench.broadcast [--users 1000000]
                                    #   [--workers 4] [--connected 1000]

The production profile on a fresh PostgreSQL database, Redis and RabbitMQ:
``--users`` accounts (written with COPY), a uvicorn server, ``--workers``
Celery worker processes on the ``notifications`` queue, and ``--connected``
of the users (spread over the id range) with an open ``/ws/notifications/``
socket held by a client process.

* **Emporium**: a staff ``POST /api/notifications/broadcasts/`` (in-app,
  audience ``all``); the clock runs from the request to the moment every
  inbox row is committed (the broadcast completed) and every connected client
  has received its notification, whichever is later.
* **Reference (COPY)**: PostgreSQL's ``COPY`` of the same number of inbox rows
  (same columns and values) into the same table, with all its indexes, in
  one transaction; then the table is emptied for the Emporium run.

Printed: both times, rows/s and the ratio; lost and duplicated rows (from
the table: rows per recipient), and pushes received per connected client.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common

DATABASE = "emporium_bench_broadcast"
TITLE = "Summer sale"
BODY = "Everything is 20 % off until Sunday midnight. Happy shopping!"


# -- the socket clients (a process of their own) --------------------------------------------


async def _clients(url: str, tokens: list[str], deadline: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    semaphore = asyncio.Semaphore(200)
    received: list[int] = [0] * len(tokens)
    last = 0.0

    async def one(index: int, token: str, ready: asyncio.Event) -> None:
        nonlocal last
        async with semaphore:
            connection = await connect(
                url,
                subprotocols=["emporium.jwt", token],  # type: ignore[list-item]
                open_timeout=60,
                ping_interval=None,
                max_queue=None,
                compression=None,
            )
            await connection.recv()  # the welcome: subscribed from here on
        ready.set()
        try:
            while time.time() < deadline:
                try:
                    text = await asyncio.wait_for(connection.recv(), deadline - time.time())
                except TimeoutError:
                    break
                message = json.loads(text)
                if message.get("type") == "notification" and message.get("kind") == "broadcast":
                    received[index] += 1
                    last = time.time()
                    if received[index] >= 1:
                        # Stay a little longer to catch a duplicate, then leave.
                        with_deadline = min(deadline, time.time() + 2)
                        try:
                            text = await asyncio.wait_for(
                                connection.recv(), max(0.0, with_deadline - time.time())
                            )
                            if json.loads(text).get("kind") == "broadcast":
                                received[index] += 1
                        except TimeoutError:
                            pass
                        break
        finally:
            await connection.close()

    events = [asyncio.Event() for _ in tokens]
    tasks = [
        asyncio.create_task(one(index, token, events[index])) for index, token in enumerate(tokens)
    ]
    await asyncio.gather(*(event.wait() for event in events))
    print("READY", flush=True)
    await asyncio.gather(*tasks)
    return {
        "connected": len(tokens),
        "received_once": sum(1 for count in received if count == 1),
        "received_twice_or_more": sum(1 for count in received if count > 1),
        "missed": sum(1 for count in received if count == 0),
        "last_receive": last,
    }


def clients_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--deadline", type=float, required=True)
    options = parser.parse_args(argv)
    tokens = Path(options.tokens).read_text().split()
    result = asyncio.run(_clients(options.url, tokens, options.deadline))
    print(json.dumps(result), flush=True)


# -- preparing the database -------------------------------------------------------------------


def users_copy(connection: Any, count: int) -> None:
    """``count`` active accounts, written with COPY (unusable passwords)."""
    buffer = io.StringIO()
    for number in range(count):
        name = f"fan{number}"
        buffer.write(
            f"!\tf\t{name}\tFan\t{number}\t{name}@bench.example\tf\tt\t"
            "2026-01-01 00:00:00+00\t2026-01-01 00:00:00+00\t2026-01-01 00:00:00+00\t"
            f"{name}\n"
        )
    buffer.seek(0)
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY accounts_user (password, is_superuser, username, first_name, last_name,"
            " email, is_staff, is_active, date_joined, created_at, updated_at, username_key)"
            " FROM STDIN"
        ) as copy,
    ):
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)
    connection.commit()


def reference_copy(connection: Any, user_ids: list[int]) -> float:
    """Seconds to COPY one inbox row per user into the inbox table with its indexes."""
    data = json.dumps({"broadcast_id": 0}, separators=(",", ":"))
    buffer = io.StringIO()
    for user_id in user_ids:
        buffer.write(
            f"{user_id}\tbroadcast\t{TITLE}\t{BODY}\t{data}\tbroadcast:0\t2026-06-01 00:00:00+00\n"
        )
    payload = buffer.getvalue()
    started = time.perf_counter()
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY notifications_notification"
            " (recipient_id, kind, title, body, data, dedup_key, created_at) FROM STDIN"
        ) as copy,
    ):
        for start in range(0, len(payload), 1 << 20):
            copy.write(payload[start : start + (1 << 20)])
    connection.commit()
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notifications_notification")
        copied = cursor.fetchone()[0]
        if copied != len(user_ids):
            raise RuntimeError(f"the reference copied {copied} rows")
        cursor.execute("TRUNCATE notifications_notification")
    connection.commit()
    return seconds


def tokens_write(env: dict[str, str], user_ids: list[int], path: Path) -> str:
    """Access tokens for the connected users and for a staff account; returns the staff token."""
    script = (
        "import sys\n"
        "from emporium.accounts.models import User\n"
        "from emporium.accounts.roles import Role, user_role_assign\n"
        "from rest_framework_simplejwt.tokens import AccessToken\n"
        f"ids = {user_ids!r}\n"
        "users = User.objects.in_bulk(ids)\n"
        f"open({str(path)!r}, 'w').write('\\n'.join(str(AccessToken.for_user(users[i])) "
        "for i in ids))\n"
        "staff = User.objects.get(username='fan0')\n"
        "user_role_assign(user=staff, role=Role.ADMIN)\n"
        f"open({str(path) + '.staff'!r}, 'w').write(str(AccessToken.for_user(staff)))\n"
    )
    common.manage(env, "shell", "-v0", "-c", script)
    return Path(str(path) + ".staff").read_text().strip()


# -- the run ------------------------------------------------------------------------------------


def post_broadcast(base: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        base + "/api/notifications/broadcasts/",
        data=json.dumps(
            {"title": TITLE, "body": BODY, "channels": ["in_app"], "audience": {"type": "all"}}
        ).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return dict(json.loads(response.read()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--connected", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=300)
    options = parser.parse_args(argv)

    import psycopg

    logs = common.RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    database_url = common.recreate_database(DATABASE)
    env = common.production_env(
        database_url,
        DATABASE_CONN_MAX_AGE="600",
    )
    common.manage(env, "migrate", "--no-input", "-v0")
    with psycopg.connect(database_url) as connection:
        users_copy(connection, options.users)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE accounts_user")
            cursor.execute("SELECT id FROM accounts_user ORDER BY id")
            user_ids = [row[0] for row in cursor.fetchall()]
        connection.commit()
    step = max(1, len(user_ids) // max(1, options.connected))
    connected_ids = user_ids[::step][: options.connected]
    tokens = common.RESULTS / "broadcast-tokens.txt"
    staff_token = tokens_write(env, connected_ids, tokens)

    # The caller holds the bench lock (flock /tmp/emporium-bench.lock), as for every scenario.
    if True:
        with psycopg.connect(database_url) as connection:
            copy_seconds = reference_copy(connection, user_ids)
            with connection.cursor() as cursor:
                cursor.execute("CHECKPOINT")
            connection.commit()

        from bench.channels import purge

        purge(env["BROKER_URL"], "notifications")
        port = common.free_port()
        server = subprocess.Popen(
            common.uvicorn_command("config.asgi:application", port=port, workers=1),
            cwd=common.ROOT,
            env=env,
            stdout=(logs / "broadcast-server.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        workers = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "notifications",
                "--pool", "prefork", "--concurrency", str(options.workers),
                "--loglevel", "WARNING", "--without-heartbeat", "--without-mingle",
                "--without-gossip", "--hostname", f"bench-broadcast-{os.getpid()}@%h",
            ],
            cwd=common.ROOT,
            env={**env, "METRICS_PORT": "0"},
            stdout=(logs / "broadcast-workers.log").open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        clients: subprocess.Popen[str] | None = None
        try:
            base = f"http://127.0.0.1:{port}"
            common.wait_http(base + "/healthz")
            deadline = time.time() + options.timeout + 120
            clients = subprocess.Popen(
                [
                    sys.executable, "-m", "bench.broadcast", "--clients-only",
                    "--url", f"ws://127.0.0.1:{port}/ws/notifications/",
                    "--tokens", str(tokens), "--deadline", str(deadline),
                ],
                cwd=common.ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            line = clients.stdout.readline().strip() if clients.stdout else ""
            if line != "READY":
                raise RuntimeError(f"the socket clients did not connect: {line!r}")
            time.sleep(3)  # the workers have declared their queue
            cpu_before = common.process_cpu()
            started = time.time()
            accepted = post_broadcast(base, staff_token)
            accepted_at = time.time()
            broadcast_id = accepted["id"]
            completed_at = None
            with psycopg.connect(database_url, autocommit=True) as watcher:
                while time.time() < started + options.timeout:
                    row = watcher.execute(
                        "SELECT status, batches_done, batches_total FROM"
                        " notifications_broadcast WHERE id = %s",
                        (broadcast_id,),
                    ).fetchone()
                    if row and row[0] == "completed":
                        completed_at = time.time()
                        break
                    time.sleep(0.05)
                if completed_at is None:
                    raise RuntimeError(f"the broadcast did not complete: {row}")
                out, _ = clients.communicate(timeout=options.timeout)
                pushed = json.loads(out.strip().splitlines()[-1])
                cpu = common.cpu_spent(
                    cpu_before,
                    common.process_cpu(),
                    {
                        "workers": lambda command: "celery" in command and "worker" in command,
                        "server": lambda command: "uvicorn" in command,
                        "postgresql": common.postgres_backend(DATABASE),
                    },
                )
                counted = watcher.execute(
                    "SELECT count(*), count(DISTINCT recipient_id) FROM notifications_notification"
                    " WHERE dedup_key = %s",
                    (f"broadcast:{broadcast_id}",),
                ).fetchone()
                if counted is None:
                    raise RuntimeError("the inbox could not be counted")
                rows, recipients = counted
        finally:
            if clients is not None and clients.poll() is None:
                clients.kill()
            common.stop(workers)
            common.stop(server)

    finished = max(completed_at, pushed["last_receive"] or completed_at)
    seconds = finished - started
    result = {
        "users": options.users,
        "workers": options.workers,
        "accepted_seconds": accepted_at - started,
        "inbox_seconds": completed_at - started,
        "end_to_end_seconds": seconds,
        "copy_seconds": copy_seconds,
        "rows": rows,
        "distinct_recipients": recipients,
        "lost": options.users - recipients,
        "duplicated": rows - recipients,
        "batches": accepted["batches_total"],
        "pushed": pushed,
        "cpu": cpu,
    }
    print(f"\nbroadcast: {options.users} users, {accepted['batches_total']} batches, "
          f"{options.workers} worker processes")  # fmt: skip
    print(f"  accepted (202)    {result['accepted_seconds']:>7.2f} s")
    print(f"  every row inbox   {result['inbox_seconds']:>7.2f} s")
    print(f"  end to end        {seconds:>7.2f} s  ({options.users / seconds:,.0f} rows/s)")
    print(
        f"  reference COPY    {copy_seconds:>7.2f} s  ({options.users / copy_seconds:,.0f} rows/s)"
    )
    print(f"  ratio             {seconds / copy_seconds:>7.2f}x the COPY")
    print(f"  rows {rows}, distinct recipients {recipients}: lost {result['lost']}, "
          f"duplicated {result['duplicated']}")  # fmt: skip
    print(
        f"  connected clients {pushed['connected']}: received once {pushed['received_once']}, "
        f"twice or more {pushed['received_twice_or_more']}, missed {pushed['missed']}"
    )
    print(f"  cpu seconds {cpu}")
    path = common.save("broadcast", {"options": vars(options), "result": result})
    print(f"  saved {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    if "--clients-only" in sys.argv:
        clients_main([argument for argument in sys.argv[1:] if argument != "--clients-only"])
    else:
        main(sys.argv[1:])
