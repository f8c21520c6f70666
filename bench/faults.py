"""Faults under load on `make cluster`: every acknowledged order and payment survives.

Starts a cluster of its own (deploy/cluster/cluster.py, with the TCP fault proxy
between the app and PostgreSQL, Redis and RabbitMQ), runs a bounded mixed load
through nginx - catalog reads (cached and uncached), searches, checkouts with
Idempotency-Keys followed by payments, telemetry batches, WebSocket clients -
and, one after the other:

  kill_app   kill -9 one app server (started again afterwards)
  redis      Redis stopped for --outage seconds, then started again (empty)
  broker     the broker cut at the proxy for --outage seconds
  replica    the streaming replica stopped for --outage seconds, then started again
  latency    200 ms added to every chunk between the app and PostgreSQL, Redis, RabbitMQ
  resets     every connection between the app and PostgreSQL, Redis, RabbitMQ reset each second
  burst      a burst of concurrent requests beyond the app servers' database pools

A client whose checkout or payment fails (a 5xx, a reset) retries it with the same
Idempotency-Key, as the API asks. After each phase the acknowledged orders and
payments are counted in the database; at the end the outbox must be drained and
every acknowledged payment settled. Exits non-zero on any loss, duplicate, 500,
failed GET where none may fail, or request that hung past its bound.

    python -m bench.faults [--outage 20] [--phase-seconds 10] [--only redis,broker]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.cluster import Cluster, cluster_directory, cluster_environment, eventually

# httpx logs every request at INFO.
logging.getLogger("httpx").setLevel(logging.WARNING)

FAULTS = ("kill_app", "redis", "broker", "replica", "latency", "resets", "burst")
# No request may take longer than this, whatever the fault: the app's own timeouts
# (pool 5 s, statement, Redis socket 1 s) and nginx's proxy_read_timeout (30 s) bound it.
HANG_SECONDS = 31.0
SEARCH_WORDS = ("lamp", "chair", "coffee", "blue", "steel", "wood", "green", "desk")


@dataclass
class Tally:
    """Outcomes per phase and kind of request: a status code or an error's name."""

    outcomes: dict[tuple[str, str], Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    slowest: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, phase: str, kind: str, outcome: str, seconds: float) -> None:
        with self.lock:
            self.outcomes[(phase, kind)][outcome] += 1
            self.slowest[(phase, kind)] = max(self.slowest[(phase, kind)], seconds)


class Load:
    """The mixed load: threads that run until :meth:`finish`, recording per phase."""

    def __init__(self, cluster: Cluster, *, readers: int, buyers: int, sockets: int) -> None:
        self.cluster = cluster
        self.phase = "baseline"
        self.tally = Tally()
        self.stopping = threading.Event()
        self.tokens = iter(cluster.buyers())
        self.tokens_lock = threading.Lock()
        self.orders: dict[str, int] = {}  # Idempotency-Key -> acknowledged order id
        self.payments: dict[int, int] = {}  # order id -> acknowledged payment id
        self.gave_up: Counter[str] = Counter()
        self.acknowledged_in: Counter[str] = Counter()  # orders acknowledged per phase
        self.lock = threading.Lock()
        self.products = [
            row[0] for row in cluster.sql("SELECT id FROM catalog_product ORDER BY id LIMIT 200")
        ]
        self.threads = [
            *(threading.Thread(target=self.reader, args=(i,), daemon=True) for i in range(readers)),
            threading.Thread(target=self.searcher, daemon=True),
            *(threading.Thread(target=self.buyer, args=(i,), daemon=True) for i in range(buyers)),
            *(threading.Thread(target=self.socket, args=(i,), daemon=True) for i in range(sockets)),
        ]
        self.telemetry: subprocess.Popen[bytes] | None = None

    # -- the load ----------------------------------------------------------------------

    def start(self, seconds: float) -> None:
        for thread in self.threads:
            thread.start()
        self.telemetry = self.cluster.telemetry(seconds)

    def finish(self) -> str:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)
        said = ""
        if self.telemetry is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                out, _ = self.telemetry.communicate(timeout=90)
                said = out.decode(errors="replace").strip().splitlines()[-1:][0] if out else ""
        return said

    def call(
        self, client: httpx.Client, kind: str, method: str, path: str, **options: Any
    ) -> httpx.Response | None:
        phase = self.phase
        started = time.monotonic()
        try:
            response = client.request(method, path, **options)
        except httpx.HTTPError as error:
            self.tally.record(phase, kind, type(error).__name__, time.monotonic() - started)
            return None
        outcome = str(response.status_code)
        if response.status_code >= 500 or response.status_code == 429:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                outcome += " " + response.json()["error"]["code"]
            if response.status_code in (429, 503) and "retry-after" not in response.headers:
                outcome += " without Retry-After"
        self.tally.record(phase, kind, outcome, time.monotonic() - started)
        return response

    def reader(self, index: int) -> None:
        rng = random.Random(index)
        with self.cluster.client(f"127.0.1.{index + 1}", timeout=40) as client:
            while not self.stopping.is_set():
                choice = rng.random()
                if choice < 0.4:
                    self.call(client, "catalog cached", "GET", "/api/products/")
                elif choice < 0.8:
                    product = rng.choice(self.products)
                    # A cookie keeps the request out of nginx's micro-cache.
                    self.call(
                        client,
                        "catalog uncached",
                        "GET",
                        f"/api/products/{product}/",
                        headers={"Cookie": f"reader={index}"},
                    )
                else:
                    self.call(
                        client,
                        "catalog uncached",
                        "GET",
                        "/api/categories/",
                        headers={"Cookie": f"reader={index}"},
                    )
                time.sleep(0.05)

    def searcher(self) -> None:
        rng = random.Random(99)
        with self.cluster.client("127.0.2.1", timeout=40) as client:
            while not self.stopping.is_set():
                word = rng.choice(SEARCH_WORDS)
                self.call(
                    client,
                    "search",
                    "GET",
                    f"/api/search/?q={word}",
                    headers={"Cookie": "searcher=1"},
                )
                time.sleep(0.1)

    def next_token(self) -> str | None:
        with self.tokens_lock:
            return next(self.tokens, None)

    def buyer(self, index: int) -> None:
        with self.cluster.client(f"127.0.3.{index + 1}", timeout=40) as client:
            while not self.stopping.is_set():
                token = self.next_token()
                if token is None:
                    return
                order = self.checkout(client, token)
                if order is not None:
                    self.pay(client, token, order)
                time.sleep(0.2)

    def retried(
        self, attempt: Callable[[], httpx.Response | None], *, deadline_seconds: float = 90
    ) -> httpx.Response | None:
        """The same request until it is answered 2xx or a 4xx other than 409/429."""
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            response = attempt()
            if response is not None:
                if response.status_code < 300:
                    return response
                if response.status_code < 500 and response.status_code not in (409, 429):
                    return response
                with contextlib.suppress(ValueError):
                    time.sleep(min(2.0, float(response.headers.get("retry-after", "0.5"))))
                    continue
            time.sleep(0.5)
        return None

    def checkout(self, client: httpx.Client, token: str) -> int | None:
        key = str(uuid.uuid4())
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        answer = self.retried(
            lambda: self.call(client, "checkout", "POST", "/api/orders/", headers=headers)
        )
        if answer is None or answer.status_code >= 300:
            self.gave_up["checkout " + (str(answer.status_code) if answer else "no answer")] += 1
            return None
        order_id = int(answer.json()["id"])
        with self.lock:
            self.orders[key] = order_id
            self.acknowledged_in[self.phase] += 1
        return order_id

    def pay(self, client: httpx.Client, token: str, order_id: int) -> None:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
        body = {"payment_method": "card", "token": "tok_visa"}
        answer = self.retried(
            lambda: self.call(
                client,
                "payment",
                "POST",
                f"/api/orders/{order_id}/payments/",
                headers=headers,
                json=body,
            )
        )
        if answer is None or answer.status_code >= 300:
            self.gave_up["payment " + (str(answer.status_code) if answer else "no answer")] += 1
            return
        with self.lock:
            self.payments[order_id] = int(answer.json()["id"])

    def socket(self, index: int) -> None:
        """A WebSocket client on /ws/orders/ that reconnects whenever it is closed."""
        import websockets

        token = self.next_token() or ""
        url = f"wss://localhost:{self.cluster.ports['https']}/ws/orders/"

        async def session() -> None:
            async with websockets.connect(
                url,
                ssl=self.cluster.tls(),
                open_timeout=10,
                subprotocols=[
                    websockets.Subprotocol("emporium.jwt"),
                    websockets.Subprotocol(token),
                ],
            ) as connection:
                welcome = json.loads(await asyncio.wait_for(connection.recv(), timeout=10))
                self.tally.record(self.phase, "websocket", welcome.get("type", "?"), 0)
                while not self.stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(connection.recv(), timeout=1)

        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                asyncio.run(session())
            except Exception as error:  # a closed or refused socket: count it, reconnect
                self.tally.record(
                    self.phase, "websocket", type(error).__name__, time.monotonic() - started
                )
                time.sleep(1)

    # -- counting ----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Acknowledged orders and payments, and how many of each the database holds."""
        with self.lock:
            order_ids = sorted(set(self.orders.values()))
            payment_ids = sorted(set(self.payments.values()))
        in_database = self.cluster.sql(
            "SELECT (SELECT count(*) FROM orders_order WHERE id = ANY(%s)),"
            " (SELECT count(*) FROM payments_payment WHERE id = ANY(%s)),"
            " (SELECT count(*) FROM (SELECT user_id FROM orders_order o JOIN accounts_user u"
            "   ON u.id = o.user_id WHERE u.username LIKE 'buyer%%'"
            "   GROUP BY user_id HAVING count(*) > 1) twice),"
            " (SELECT count(*) FROM (SELECT order_id FROM payments_payment"
            "   GROUP BY order_id HAVING count(*) > 1) twice),"
            " (SELECT count(*) FROM orders_order o JOIN accounts_user u ON u.id = o.user_id"
            "   WHERE u.username LIKE 'buyer%%')",
            (order_ids, payment_ids),
        )[0]
        return {
            "orders acknowledged": len(order_ids),
            "orders in database": int(in_database[0]),
            "payments acknowledged": len(payment_ids),
            "payments in database": int(in_database[1]),
            "buyers with two orders": int(in_database[2]),
            "orders with two payments": int(in_database[3]),
            # Placed but never acknowledged: a client that gave up, or a burst
            # checkout whose answer was lost. Never more than the clients that gave up.
            "orders never acknowledged": int(in_database[4]) - int(in_database[0]),
        }


# -- faults ------------------------------------------------------------------------------

ROUTES = ("postgres", "redis", "broker")


@contextlib.contextmanager
def fault(cluster: Cluster, name: str, outage: float) -> Iterator[None]:
    """Puts the fault in place for the phase, and takes it away after."""
    if name == "kill_app":
        cluster.kill("app-1", "KILL")
        try:
            yield
        finally:
            cluster.restart("app-1")
            eventually(lambda: cluster.healthy("app-1"), 60)
    elif name == "redis":
        cluster.kill("redis", "KILL")
        try:
            yield
        finally:
            cluster.restart("redis")
    elif name == "broker":
        cluster.proxy("broker", "cut")
        try:
            yield
        finally:
            cluster.proxy("broker", "restore")
    elif name == "replica":
        cluster.kill("replica", "TERM")
        try:
            yield
        finally:
            cluster.restart("replica")
    elif name == "latency":
        for route in ROUTES:
            cluster.proxy(route, "latency", ms="200")
        try:
            yield
        finally:
            for route in ROUTES:
                cluster.proxy(route, "latency", ms="0")
    elif name == "resets":
        stop = threading.Event()

        def resetting() -> None:
            while not stop.wait(1.0):
                for route in ROUTES:
                    cluster.proxy(route, "reset")

        thread = threading.Thread(target=resetting, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
    elif name == "burst":
        # The database slows down as the burst arrives: connections are held longer,
        # requests queue for the pools, and those that wait past DATABASE_POOL_TIMEOUT
        # must be answered 503 with Retry-After.
        cluster.proxy("postgres", "latency", ms="100")
        try:
            yield
        finally:
            cluster.proxy("postgres", "latency", ms="0")
    else:
        raise ValueError(name)


def burst(cluster: Cluster, load: Load, requests: int = 240) -> None:
    """Many clients at once, each from its own address (under nginx's per-client limit):
    uncached reads, and checkouts of buyers of their own, each tried once."""

    def one(index: int) -> None:
        address = f"127.0.{10 + index // 200}.{1 + index % 200}"
        with cluster.client(address, timeout=40) as client:
            token = load.next_token() if index % 2 else None
            if token is None:
                product = load.products[index % len(load.products)]
                load.call(
                    client,
                    "burst read",
                    "GET",
                    f"/api/products/{product}/",
                    headers={"Cookie": "burst=1"},
                )
                return
            key = str(uuid.uuid4())
            answer = load.call(
                client,
                "burst checkout",
                "POST",
                "/api/orders/",
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            )
            if answer is not None and answer.status_code == 201:
                with load.lock:
                    load.orders[key] = int(answer.json()["id"])

    with ThreadPoolExecutor(120) as pool:
        list(pool.map(one, range(requests)))


def replica_reads(cluster: Cluster) -> int:
    """Transactions the replica has run in the emporium database (reads land there)."""
    try:
        rows = cluster.sql(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'emporium'",
            replica=True,
        )
    except Exception:  # the replica is stopped in its own phase
        return -1
    return int(rows[0][0])


# -- the scenario --------------------------------------------------------------------------


def drained(cluster: Cluster, load: Load) -> dict[str, int]:
    with load.lock:
        payment_ids = sorted(set(load.payments.values()))
    row = cluster.sql(
        "SELECT (SELECT count(*) FROM integrations_outboxevent WHERE published_at IS NULL),"
        " (SELECT count(*) FROM payments_payment WHERE id = ANY(%s) AND status = 'pending')",
        (payment_ids,),
    )[0]
    return {"outbox unpublished": int(row[0]), "payments pending": int(row[1])}


def run(
    cluster: Cluster,
    faults: list[str],
    *,
    outage: float,
    phase_seconds: float,
    readers: int = 3,
    buyers: int = 3,
    sockets: int = 2,
    settle_seconds: float = 240,
) -> tuple[list[str], list[tuple[str, dict[str, int]]], Load]:
    """Runs the load through every fault; returns the problems found and the counts."""
    problems: list[str] = []
    counts: list[tuple[str, dict[str, int]]] = []
    total = phase_seconds * (len(faults) + 2) + outage * len(faults) + 30
    load = Load(cluster, readers=readers, buyers=buyers, sockets=sockets)
    load.start(total)
    time.sleep(phase_seconds)
    counts.append(("baseline", load.counts()))
    for name in faults:
        load.phase = name
        with fault(cluster, name, outage):
            if name == "burst":
                burst(cluster, load)
            time.sleep(outage if name in ("redis", "broker", "replica") else phase_seconds)
        load.phase = f"after {name}"
        time.sleep(phase_seconds)
        counted = load.counts()
        if name == "replica":
            # The replica was stopped and started again: its statistics begin anew, and
            # every transaction counted came after the restart (reads went back to it).
            counted["replica transactions after its restart"] = replica_reads(cluster)
            if counted["replica transactions after its restart"] <= 0:
                problems.append("replica: no read went back to the replica after its restart")
        counts.append((name, counted))
        problems += check_phase(load, name, counted)
    load.phase = "end"
    said = load.finish()
    waited = time.monotonic()
    settled = eventually(
        lambda: drained(cluster, load) == {"outbox unpublished": 0, "payments pending": 0},
        settle_seconds,
    )
    final = {**load.counts(), **drained(cluster, load)}
    final["seconds to settle after the load"] = round(time.monotonic() - waited)
    counts.append(("end", final))
    if not settled:
        problems.append(
            f"not settled {settle_seconds:.0f} s after the load: {drained(cluster, load)}"
        )
    problems += check_phase(load, "end", final)
    if said:
        counts.append((f"telemetry: {said}", {}))
    return problems, counts, load


def check_phase(load: Load, name: str, counted: dict[str, int]) -> list[str]:
    problems = []
    if counted["orders in database"] != counted["orders acknowledged"]:
        problems.append(f"{name}: acknowledged orders missing: {counted}")
    if counted["payments in database"] != counted["payments acknowledged"]:
        problems.append(f"{name}: acknowledged payments missing: {counted}")
    if counted["buyers with two orders"] or counted["orders with two payments"]:
        problems.append(f"{name}: duplicates: {counted}")
    # An order nobody was told about may only come from an answer that never arrived
    # (a client that gave up, a burst checkout cut off); never from a 503 or a 429.
    ambiguous = sum(n for reason, n in load.gave_up.items() if reason.startswith("checkout"))
    ambiguous += sum(
        n
        for (_, kind), outcomes in load.tally.outcomes.items()
        if kind == "burst checkout"
        for outcome, n in outcomes.items()
        if not outcome.startswith(("201", "503", "429"))
    )
    # Only once the load is over: before, an order committed a moment ago may still
    # be on its way to the client that placed it.
    if name == "end" and counted["orders never acknowledged"] > ambiguous:
        problems.append(f"{name}: orders placed though refused: {counted}")
    for (phase, kind), outcomes in load.tally.outcomes.items():
        if phase not in (name, f"after {name}"):
            continue
        server_errors = {o: n for o, n in outcomes.items() if o.startswith("500")}
        if server_errors:
            problems.append(f"{phase} {kind}: {server_errors}")
        without = {o: n for o, n in outcomes.items() if "without Retry-After" in o}
        if without:
            problems.append(f"{phase} {kind}: {without}")
        if load.tally.slowest[(phase, kind)] > HANG_SECONDS:
            problems.append(
                f"{phase} {kind}: a request took {load.tally.slowest[(phase, kind)]:.1f} s"
            )
        reads = kind.startswith("catalog") or kind == "search"
        if reads and phase in ("kill_app", "redis", "replica", "broker", "after kill_app"):
            failed = {o: n for o, n in outcomes.items() if not o.startswith("2")}
            if failed:
                problems.append(f"{phase} {kind}: reads failed {failed}")
    if name in ("redis", "broker", "kill_app") and not load.acknowledged_in[name]:
        problems.append(f"{name}: no checkout was acknowledged during the fault")
    return problems


def report(load: Load, counts: list[tuple[str, dict[str, int]]]) -> None:
    print()
    print(f"{'phase':<16}{'requests':<18}{'outcomes':<70}{'slowest s':>9}")
    for (phase, kind), outcomes in sorted(
        load.tally.outcomes.items(),
        key=lambda item: ([p for p, _ in load.tally.outcomes].index(item[0][0]), item[0][1]),
    ):
        shown = ", ".join(f"{o}: {n}" for o, n in outcomes.most_common())
        print(f"{phase:<16}{kind:<18}{shown:<70}{load.tally.slowest[(phase, kind)]:>9.2f}")
    print()
    for phase, counted in counts:
        shown = ", ".join(f"{name} {value}" for name, value in counted.items())
        print(f"{phase:<16}{shown}")
    if load.gave_up:
        print(f"clients gave up: {dict(load.gave_up)}")


def start_cluster(tag: str, **settings: str) -> Cluster:
    directory = cluster_directory(tag)
    cluster = Cluster(
        directory,
        cluster_environment(
            directory,
            CLUSTER_FAULT_PROXY="1",
            CLUSTER_BUYERS=settings.pop("CLUSTER_BUYERS", "3000"),
            # The load comes from many loopback addresses at a steady pace; nginx's
            # per-client limit stays as deployed.
            THROTTLE_USER_WRITES="100000/min",
            # Four request threads per app server over a pool of two connections that
            # waits at most a second: a burst exceeds the pools and must get 503s.
            CLUSTER_WEB_THREADS="4",
            DATABASE_POOL_MAX_SIZE="2",
            DATABASE_POOL_TIMEOUT="1",
            **settings,
        ),
    )
    cluster.start()
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=20.0)
    parser.add_argument("--phase-seconds", type=float, default=8.0)
    parser.add_argument("--only", default=",".join(FAULTS))
    parser.add_argument("--app-servers", default="2")
    args = parser.parse_args()
    faults = [name for name in args.only.split(",") if name]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        sys.exit(f"unknown faults: {sorted(unknown)}; choose from {FAULTS}")
    cluster = start_cluster("faults", CLUSTER_APP_SERVERS=args.app_servers)
    try:
        problems, counts, load = run(
            cluster, faults, outage=args.outage, phase_seconds=args.phase_seconds
        )
    finally:
        cluster.stop()
    report(load, counts)
    if problems:
        print("\nFAILED:")
        for problem in problems:
            print(f"  {problem}")
        sys.exit(1)
    print("\nno acknowledged order or payment lost, no duplicate, no 500, nothing hung")


if __name__ == "__main__":
    main()
