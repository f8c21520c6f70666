"""The shopper's journey, end to end: journeys per second and each step's latency.

Each virtual customer signs in once (``POST /api/auth/login/``), then, until the
time is up, repeats one journey on its own keep-alive connection:

    1. list      GET /api/products/?page_size=20
    2. list 2    the second page (the first page's ``next`` link)
    3. product   GET /api/products/<id>/ (one of the page's products)
    4. search    GET /api/search/?q=<word>
    5. add       POST /api/cart/items/   two products of the page
    6. add 2
    7. cart      GET /api/cart/
    8. checkout  POST /api/orders/
    9. pay       POST /api/orders/<id>/payments/ with the simulated provider's tok_visa
   10. orders    GET /api/orders/

Production settings, granian with 2 workers of one thread, 10,000 demo products,
64 customers; the payments are charged for real in the background (the outbox
relay, a Celery worker on the payments queue, the payment provider simulator,
``simulators/payment_provider.py``). The client is asyncio over raw HTTP/1.1
(bench/journey.py's ``Connection``), one connection per customer.

The same-run reference: the same client running the same journeys against the
minimal Django view (``bench/minimal_django.py``, same app server, workers and
threads) answering every step with bytes Emporium gave, so the ratio says how
much of what the server and client could do at most a journey reaches.

    python -m bench.journey [--seconds 20] [--customers 64]
    python -m bench.compare --base <revision> journey -- --seconds 20

``--app-root`` serves another tree (``bench.compare`` passes an earlier
revision's), with this harness. The load phases take /tmp/emporium-bench.lock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import common
from bench.shoppers import PASSWORD, seed_catalog, seed_shoppers

DATABASE = "emporium_bench_journey"
WORKERS = 2
SEARCH_WORDS = ["steel", "classic", "wireless", "cotton", "lamp", "tea", "monitor", "shoe"]
STEPS = [
    "list",
    "list 2",
    "product",
    "search",
    "add",
    "add 2",
    "cart",
    "checkout",
    "pay",
    "orders",
]


class Connection:
    """One keep-alive HTTP/1.1 connection; answers are read by Content-Length or chunks."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, *, token: str | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        payload = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Accept: application/json"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        if body is not None or method != "GET":
            head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        assert self.reader is not None  # noqa: S101 - opened above
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and "close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(parts)
        else:
            data = await self.reader.readexactly(length or 0)
        if close:
            self.writer.close()
            self.writer = None
        return status, data


class Tally:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {step: [] for step in [*STEPS, "sign in"]}
        self.errors: dict[str, int] = dict.fromkeys(self.latencies, 0)
        self.journeys = 0

    def summary(self, seconds: float) -> dict[str, Any]:
        steps = {}
        for step, values in self.latencies.items():
            ordered = sorted(values)

            def percentile(p: float, ordered: list[float] = ordered) -> float:
                if not ordered:
                    return 0.0
                return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

            steps[step] = {
                "count": len(ordered),
                "errors": self.errors[step],
                "p50_ms": percentile(0.50),
                "p99_ms": percentile(0.99),
            }
        return {
            "journeys": self.journeys,
            "journeys_per_second": self.journeys / seconds,
            "steps": steps,
        }


async def _customer(
    port: int, username: str, deadline: list[float], tally: Tally, start: asyncio.Event, seed: int
) -> None:
    rng = random.Random(seed)
    connection = Connection(port)

    async def step(name: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        began = time.perf_counter()
        status, data = await connection.request(method, path, **kwargs)
        tally.latencies[name].append(time.perf_counter() - began)
        if status >= 400:
            tally.errors[name] += 1
            raise _StepFailed(f"{name}: {status} {data[:200]!r}")
        return status, data

    _, data = await step(
        "sign in", "POST", "/api/auth/login/", body={"username": username, "password": PASSWORD}
    )
    token = json.loads(data)["access"]
    await start.wait()
    while time.monotonic() < deadline[0]:
        try:
            _, data = await step("list", "GET", "/api/products/?page_size=20", token=token)
            page = json.loads(data)
            following = urlsplit(page.get("next") or "/api/products/?ordering=price&page_size=20")
            second = f"{following.path}?{following.query}"
            await step("list 2", "GET", second, token=token)
            products = [item["id"] for item in page["results"]] or [1]
            product = rng.choice(products)
            await step("product", "GET", f"/api/products/{product}/", token=token)
            word = rng.choice(SEARCH_WORDS)
            await step("search", "GET", f"/api/search/?q={word}", token=token)
            for name, chosen in zip(("add", "add 2"), rng.sample(products, 2), strict=True):
                body = {"product": chosen, "quantity": 1}
                await step(name, "POST", "/api/cart/items/", token=token, body=body)
            await step("cart", "GET", "/api/cart/", token=token)
            _, data = await step("checkout", "POST", "/api/orders/", token=token)
            order = json.loads(data)["id"]
            await step(
                "pay",
                "POST",
                f"/api/orders/{order}/payments/",
                token=token,
                body={"payment_method": "card", "token": "tok_visa"},
            )
            await step("orders", "GET", "/api/orders/", token=token)
        except _StepFailed:
            continue
        if time.monotonic() < deadline[0]:
            tally.journeys += 1


class _StepFailed(Exception):
    pass


def drive(port: int, usernames: list[str], seconds: float) -> dict[str, Any]:
    """Signs every customer in, then runs journeys for ``seconds``; the figures."""

    async def run() -> dict[str, Any]:
        tally = Tally()
        start = asyncio.Event()
        deadline = [time.monotonic() + 3600]
        # Sign-ins first (their own figure), then everyone starts together.
        tasks = [
            asyncio.create_task(_customer(port, username, deadline, tally, start, index))
            for index, username in enumerate(usernames)
        ]
        while len(tally.latencies["sign in"]) < len(usernames):
            await asyncio.sleep(0.05)
        deadline[0] = time.monotonic() + seconds
        began = time.monotonic()
        start.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        return tally.summary(time.monotonic() - began)

    return asyncio.run(run())


@contextmanager
def _process(command: list[str], *, cwd: Path, env: dict[str, str]) -> Iterator[None]:
    process = subprocess.Popen(command, cwd=cwd, env=env)
    try:
        time.sleep(0.5)
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited")
        yield
    finally:
        common.stop(process)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--customers", type=int, default=64)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--app-root", type=Path, default=common.ROOT)
    parser.add_argument(
        "--no-payments", action="store_true", help="do not charge: no relay, worker or provider"
    )
    args = parser.parse_args()
    root = args.app_root.resolve()

    provider_port = common.free_port()
    env = common.production_env(
        common.recreate_database(DATABASE),
        THROTTLE_LOGIN_IP="1000000/min",
        THROTTLE_LOGIN_ACCOUNT="1000000/min",
        PAYMENT_PROVIDER_URL=f"http://127.0.0.1:{provider_port}",
        BROKER_URL=os.environ.get("BENCH_BROKER_URL", os.environ.get("BROKER_URL", "")),
    )
    if not env["BROKER_URL"]:
        env["BROKER_URL"] = "amqp://guest:guest@127.0.0.1:5672//"
    common.manage(env, "migrate", "--no-input", "-v0", cwd=root)
    seed_catalog(env, products=args.products, database=DATABASE, cwd=root)
    work = Path(tempfile.mkdtemp(prefix="emporium-bench-journey-"))
    seeded = work / "shoppers.txt"
    seed_shoppers(env, count=args.customers, out=seeded, cwd=root)
    common.psql("VACUUM ANALYZE", DATABASE)
    usernames = [line.split("\t")[0] for line in seeded.read_text().splitlines() if "\t" in line]

    app_port, reference_port = common.free_port(), common.free_port()
    bodies = work / "reference"
    bodies.mkdir()
    with common.bench_lock(), ExitStack() as stack:
        if not args.no_payments:
            stack.enter_context(
                _process(
                    [
                        sys.executable,
                        "-m",
                        "simulators.payment_provider",
                        "--port",
                        str(provider_port),
                        "--latency-ms",
                        "5",
                        "--jitter-ms",
                        "1",
                    ],
                    cwd=root,
                    env=env,
                )
            )
            stack.enter_context(
                _process([sys.executable, "manage.py", "outbox_relay"], cwd=root, env=env)
            )
            stack.enter_context(
                _process(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "config",
                        "worker",
                        "-Q",
                        "payments",
                        "-c",
                        "2",
                        "--loglevel",
                        "WARNING",
                    ],
                    cwd=root,
                    env=env,
                )
            )
        stack.enter_context(
            common.app_server(
                env,
                kind="granian",
                port=app_port,
                workers=WORKERS,
                ready_path="/api/categories/",
                cwd=root,
            )
        )
        # Warm-up: a few journeys (connections, prepared statements, caches).
        drive(app_port, usernames[:8], 3)
        reference_bodies(app_port, usernames[0], bodies)
        measured = drive(app_port, usernames, args.seconds)
        stack.enter_context(
            common.app_server(
                {**env, "BENCH_REFERENCE_BODIES": str(bodies)},
                kind="granian",
                port=reference_port,
                workers=WORKERS,
                ready_path="/api/auth/me/",
                target="bench.minimal_django:application",
            )
        )
        reference = drive(reference_port, usernames, args.seconds)
        time.sleep(2)  # the worker charges what is still queued
    payments = common.psql(
        "SELECT status, COUNT(*) FROM payments_payment GROUP BY status ORDER BY status", DATABASE
    )

    ratio = measured["journeys_per_second"] / reference["journeys_per_second"]
    print()
    print(
        f"{'step':<12}{'count':>8}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'ref p50':>9}{'ref p99':>9}"
    )
    for step in ["sign in", *STEPS]:
        mine, theirs = measured["steps"][step], reference["steps"][step]
        print(
            f"{step:<12}{mine['count']:>8}{mine['errors']:>8}{mine['p50_ms']:>9.1f}"
            f"{mine['p99_ms']:>9.1f}{theirs['p50_ms']:>9.1f}{theirs['p99_ms']:>9.1f}"
        )
    print(
        f"\njourneys/s {measured['journeys_per_second']:.1f} ({measured['journeys']} in "
        f"{args.seconds} s, {args.customers} customers); reference (minimal Django view, same "
        f"client) {reference['journeys_per_second']:.1f}; ratio {ratio:.3f}"
    )
    print(f"payments by status: {payments.replace(chr(10), ', ')}")
    saved = common.save(
        "journey",
        {
            "settings": {**vars(args), "app_root": str(root)},
            "measured": measured,
            "reference": reference,
            "ratio": ratio,
            "payments": payments,
        },
    )
    print(f"saved {saved.relative_to(common.ROOT)}")


def reference_bodies(port: int, username: str, directory: Path) -> None:
    """Emporium's own answers, for the reference to give: the page, an order, a sign-in."""

    async def fetch() -> dict[str, bytes]:
        connection = Connection(port)
        _, login = await connection.request(
            "POST", "/api/auth/login/", body={"username": username, "password": PASSWORD}
        )
        token = json.loads(login)["access"]
        _, page = await connection.request("GET", "/api/products/?page_size=20", token=token)
        product = json.loads(page)["results"][0]["id"]
        body = {"product": product, "quantity": 1}
        await connection.request("POST", "/api/cart/items/", token=token, body=body)
        _, cart = await connection.request("GET", "/api/cart/", token=token)
        _, order = await connection.request("POST", "/api/orders/", token=token)
        return {"/api/auth/login/": login, "/api/products/": page, "/api/orders/": order, "*": cart}

    answers = asyncio.run(fetch())
    mapping = {}
    for index, (path, body) in enumerate(answers.items()):
        (directory / f"{index}.json").write_bytes(body)
        mapping[path] = f"{index}.json"
    (directory / "paths.json").write_text(json.dumps(mapping))


if __name__ == "__main__":
    main()
