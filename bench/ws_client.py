"""One load-client process of the fan-out benchmark (bench/fanout.py starts several).

Opens its share of authenticated connections (token in the subprotocol
header), prints READY when every one has its welcome, then counts the
broadcast messages each receives and how late (receive time minus the
"sent" stamp in the message). Prints one JSON line and exits when every
connection has the expected number of messages, or at the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time

from websockets.asyncio.client import ClientConnection, connect


async def open_one(url: str, token: str) -> ClientConnection:
    for attempt in range(20):
        try:
            connection = await connect(
                url,
                subprotocols=["emporium.jwt", token],  # type: ignore[list-item]
                open_timeout=60,
                ping_interval=None,
                max_queue=None,
                compression=None,
            )
            await connection.recv()  # the welcome: subscribed from here on
            return connection
        except (TimeoutError, OSError):
            await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError("could not connect")


async def main(args: argparse.Namespace) -> None:
    with open(args.tokens) as handle:
        tokens = handle.read().split()
    semaphore = asyncio.Semaphore(200)  # connects in flight

    async def opened(index: int) -> ClientConnection:
        async with semaphore:
            return await open_one(args.url, tokens[index % len(tokens)])

    connections = await asyncio.gather(*(opened(i) for i in range(args.connections)))
    print("READY", flush=True)
    latencies: list[float] = []
    first_receive = last_receive = 0.0
    received = 0

    async def consume(connection: ClientConnection) -> None:
        nonlocal first_receive, last_receive, received
        for _ in range(args.messages):
            text = await connection.recv()
            now = time.time()
            # The stamp is at a fixed place, so a client need not parse all of it.
            sent = float(json.loads(text)["sent"])
            latencies.append(now - sent)
            received += 1
            if not first_receive:
                first_receive = now
            last_receive = now

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(consume(c) for c in connections)), timeout=args.deadline
        )
    print(
        json.dumps(
            {
                "received": received,
                "expected": args.connections * args.messages,
                "first_receive": first_receive,
                "last_receive": last_receive,
                "latencies": latencies,
            }
        ),
        flush=True,
    )
    for connection in connections:
        connection.transport.abort()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--deadline", type=float, default=60)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    uvloop.run(main(parser.parse_args()))
    sys.exit(0)
