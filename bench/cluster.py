"""`make cluster` from benchmarks and tests: start one, talk to it through nginx, break it.

A :class:`Cluster` is the running topology of deploy/cluster/cluster.py in a
directory of its own under var/ (PostgreSQL's user must reach it), on free
ports. Clients reach nginx over TLS with the cluster's own CA, each from a
loopback address of its choice (nginx limits requests per client address).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "cluster" / "cluster.py"


@dataclass
class Cluster:
    directory: Path
    environment: dict[str, str]

    # -- life cycle ------------------------------------------------------------------

    def command(
        self, *arguments: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *arguments],
            cwd=ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def start(self, timeout: float = 900) -> None:
        """Starts the cluster; on any failure nothing of it is left running.

        cluster.py bounds its own waits (CLUSTER_START_TIMEOUT for each group of
        processes) and stops what it started when one fails; ``timeout`` only
        catches a start that hangs, which is then stopped here, since killing
        cluster.py leaves the processes it started running without it.
        """
        try:
            done = self.command("start", check=False, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            self.stop()
            raise RuntimeError(
                f"make cluster did not start within {timeout:.0f} s; its logs are in "
                f"{self.directory}-logs"
            ) from error
        if done.returncode != 0:
            raise RuntimeError(
                f"make cluster failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
            )

    def stop(self) -> subprocess.CompletedProcess[str]:
        """Stops it all; the logs stay in var/<directory>-logs/ for whoever reads a failure."""
        self.environment["CLUSTER_KEEP_LOGS"] = f"{self.directory}-logs"
        return self.command("stop", check=False)

    @property
    def state(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.directory / "state.json").read_text())
        return loaded

    def process(self, name: str) -> dict[str, Any]:
        return next(entry for entry in self.state["processes"] if entry["name"] == name)

    def kill(self, name: str, signal_name: str = "KILL") -> None:
        self.command("kill", name, "--signal", signal_name)

    def restart(self, name: str) -> None:
        self.command("restart", name)

    def healthy(self, name: str) -> bool:
        entry = self.process(name)
        url = entry["health"].get("url")
        if not url:
            return True
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            return False

    # -- clients ---------------------------------------------------------------------

    @property
    def ports(self) -> dict[str, int]:
        ports: dict[str, int] = self.state["ports"]
        return ports

    @property
    def base(self) -> str:
        return f"https://localhost:{self.ports['https']}"

    @property
    def ca(self) -> Path:
        return self.directory / "tls" / "ca.pem"

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def client(self, address: str = "127.0.0.1", **options: Any) -> httpx.Client:
        """An HTTPS client of nginx from ``address`` (any of 127.0.0.0/8), trusting the CA."""
        transport = httpx.HTTPTransport(verify=self.tls(), local_address=address)
        options.setdefault("timeout", 30)
        return httpx.Client(base_url=self.base, transport=transport, **options)

    def buyers(self) -> list[str]:
        return (self.directory / "buyers.txt").read_text().split()

    def app_env(self) -> dict[str, str]:
        environment: dict[str, str] = self.state["app_env"]
        return environment

    def access_lines(self, name: str) -> list[dict[str, Any]]:
        """The access log lines an app server wrote (JSON, logger emporium.access)."""
        lines = []
        for line in (
            (self.directory / "log" / f"{name}.log").read_text(errors="replace").splitlines()
        ):
            if '"emporium.access"' in line:
                lines.append(json.loads(line))
        return lines

    def proxy(self, route: str, action: str, **query: str) -> dict[str, Any]:
        """Changes a route of the fault proxy: cut, restore, latency (ms=...), reset."""
        suffix = "?" + "&".join(f"{key}={value}" for key, value in query.items()) if query else ""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['proxy-control']}/{route}/{action}{suffix}",
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            loaded: dict[str, Any] = json.loads(answer.read())
            return loaded

    def telemetry(self, seconds: float) -> subprocess.Popen[bytes]:
        """The telemetry simulator sending batches through nginx for ``seconds``."""
        return subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "simulate_telemetry",
                "--devices",
                "10",
                "--rate",
                "2",
                "--batch-size",
                "10",
                "--concurrency",
                "2",
                "--duration",
                str(int(seconds)),
                "--url",
                self.base,
                "--issue-devices",
                "--no-summary-check",
            ],
            cwd=ROOT,
            env={**self.app_env(), "SSL_CERT_FILE": str(self.ca), "PATH": os.environ["PATH"]},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def sql(
        self, query: str, params: tuple[Any, ...] | None = None, *, replica: bool = False
    ) -> list[tuple[Any, ...]]:
        import psycopg

        keys = json.loads((self.directory / "secrets.json").read_text())
        with psycopg.connect(
            host="127.0.0.1",
            port=self.ports["replica" if replica else "postgres"],
            user="postgres",
            password=keys["postgres_password"],
            dbname="emporium",
            connect_timeout=5,
        ) as connection:
            return list(connection.execute(query, params).fetchall())


def cluster_environment(directory: Path, **settings: str) -> dict[str, str]:
    """The environment of a test's cluster: its own directory, free ports, a small catalog."""
    environment = {
        **os.environ,
        "CLUSTER_DIR": str(directory),
        "CLUSTER_PORT_BASE": "0",
        "CLUSTER_PROMETHEUS": "0",
        "CLUSTER_SEED_PRODUCTS": "200",
        "CLUSTER_BUYERS": "60",
        "CLUSTER_NGINX_WORKERS": "2",
        "LOG_LEVEL": "INFO",
        **settings,
    }
    return environment


def cluster_directory(tag: str) -> Path:
    """A directory under var/: PostgreSQL runs as `postgres`, which must reach it."""
    return ROOT / "var" / f"cluster-{tag}-{secrets.token_hex(4)}"


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return status != "Z"


def eventually(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()
