"""The bare reference for the fan-out benchmark: websockets' own broadcast, nothing else.

Every connection gets a welcome; whatever arrives on /publish is sent to all
other connections with ``websockets.broadcast`` (one frame built, written to
each transport without awaiting). Run: python -m bench.ws_bare --port 9000
"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()
WELCOME = '{"type":"welcome","stream":"bare"}'


async def handler(connection: ServerConnection) -> None:
    if connection.request is not None and connection.request.path == "/publish":
        async for message in connection:
            broadcast(CLIENTS, message)
        return
    CLIENTS.add(connection)
    try:
        await connection.send(WELCOME)
        await connection.wait_closed()
    finally:
        CLIENTS.discard(connection)


async def main(port: int) -> None:
    async with serve(
        handler,
        "127.0.0.1",
        port,
        subprotocols=["emporium.jwt"],  # type: ignore[list-item]
        backlog=4096,
        max_queue=4,
    ):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    import uvloop

    uvloop.run(main(parser.parse_args().port))
