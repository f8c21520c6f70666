"""A TCP fault proxy for `make cluster`: forwards loopback ports to the cluster's
servers and, on request, cuts them, slows them down or resets their connections.

    python deploy/cluster/faultproxy.py --control PORT --route NAME:LISTEN:HOST:PORT ...

Each route forwards 127.0.0.1:LISTEN to HOST:PORT, in a process of its own so
that it outlives the command that started the cluster. A small HTTP interface
on 127.0.0.1:CONTROL changes a route's behaviour:

    GET  /                       every route's state (JSON)
    POST /NAME/cut               stop listening (connections refused) and reset open ones
    POST /NAME/restore           listen again, forward normally
    POST /NAME/latency?ms=200    hold every chunk this long before forwarding it (0: off)
    POST /NAME/reset             reset the open connections, keep listening

Only the standard library: the proxy runs wherever the cluster's Python does.
The tests' ``tcp_proxy`` fixture (tests/support/processes.py) runs a
:class:`Route` in the test's own process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Route:
    """Forwards 127.0.0.1:``port`` to ``target``; :meth:`cut` refuses and drops connections."""

    def __init__(self, name: str, port: int, target: tuple[str, int]) -> None:
        self.name = name
        self.port = port
        self.target = target
        self.latency_seconds = 0.0
        self.is_cut = False
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def state(self) -> dict[str, object]:
        with self._lock:
            open_connections = len(self._connections) // 2
        return {
            "port": self.port,
            "target": f"{self.target[0]}:{self.target[1]}",
            "cut": self.is_cut,
            "latency_ms": round(self.latency_seconds * 1000),
            "open_connections": open_connections,
            "accepted": self.accepted,
        }

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Stops listening (connections refused) and resets the open connections."""
        self.stop_listening()
        self.reset()

    def restore(self) -> None:
        """Listens again and forwards without added latency."""
        self.latency_seconds = 0.0
        if self.is_cut:
            self.listen()

    def listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        self._listener = listener
        self.is_cut = False
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # close() alone leaves accept() blocked in another thread; shutdown() wakes it.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.is_cut = True

    def reset(self) -> None:
        """Resets every open connection (RST, not FIN: SO_LINGER 0)."""
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            # close() alone would not end a socket another thread is blocked reading:
            # the connection would go silent instead of being reset. shutdown() wakes
            # that thread; close() with a zero linger then aborts the connection.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for side in (client, upstream):
            side.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._connections |= {client, upstream}
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.latency_seconds:
                    time.sleep(self.latency_seconds)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            with self._lock:
                self._connections.discard(source)


ROUTES: dict[str, Route] = {}


class Control(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer(200, {name: route.state() for name, route in ROUTES.items()})

    def do_POST(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        name, _, action = parts.path.strip("/").partition("/")
        route = ROUTES.get(name)
        if route is None:
            self._answer(404, {"error": f"no route {name!r}"})
            return
        if action == "cut":
            route.cut()
        elif action == "restore":
            route.restore()
        elif action == "latency":
            query = urllib.parse.parse_qs(parts.query)
            route.latency_seconds = float(query.get("ms", ["0"])[0]) / 1000
        elif action == "reset":
            route.reset()
        else:
            self._answer(404, {"error": f"no action {action!r}"})
            return
        self._answer(200, route.state())

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--route", action="append", default=[], help="NAME:LISTEN:HOST:PORT")
    args = parser.parse_args()
    for spec in args.route:
        name, listen, host, port = spec.split(":")
        route = Route(name, int(listen), (host, int(port)))
        route.listen()
        ROUTES[name] = route
    server = ThreadingHTTPServer(("127.0.0.1", args.control), Control)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
