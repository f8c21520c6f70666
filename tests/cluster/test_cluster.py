"""`make cluster` for real: nginx with TLS and HTTP/2 in front of two granian app
servers and a WebSocket server, PostgreSQL with a streaming replica, Redis, the
broker, the workers. Started once for the module; the tests go through nginx as
a client would, kill app servers, and finally stop the cluster and look for
anything left behind.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import kombu
import pytest

from bench.cluster import (
    Cluster,
    cluster_directory,
    cluster_environment,
    eventually,
    listening,
    process_alive,
)
from conftest import require_service

pytestmark = [pytest.mark.cluster]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require_service("BROKER_URL")
    require_service("DATABASE_URL")
    directory = cluster_directory("test")
    running = Cluster(
        directory,
        cluster_environment(
            directory,
            CLUSTER_APP_SERVERS="2",
            # Low enough for one test to exceed from its own address, high enough
            # for the others' paced requests from theirs.
            CLUSTER_RATE="30r/s",
            CLUSTER_BURST="30",
        ),
    )
    running.start()
    try:
        yield running
    finally:
        if directory.exists():
            running.stop()


def _anonymous_uncached(client: httpx.Client, path: str) -> httpx.Response:
    # A cookie keeps the request out of nginx's micro-cache: it reaches an app server.
    return client.get(path, headers={"Cookie": "probe=1"})


def test_https_through_nginx_with_the_generated_ca_and_http2(cluster: Cluster) -> None:
    with cluster.client() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        products = client.get("/api/products/", headers={"Accept-Encoding": "gzip"})
        assert products.status_code == 200
        assert products.headers["content-encoding"] == "gzip"
        assert products.headers["x-cache-status"] in ("MISS", "HIT", "EXPIRED", "UPDATING")
        again = client.get("/api/products/")
        assert again.headers["x-cache-status"] == "HIT"
        assert again.json() == products.json()
    # A client without the cluster's CA refuses the certificate.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{cluster.base}/readyz", timeout=10)
    # ALPN: nginx offers HTTP/2 to a client that asks for it.
    context = cluster.tls()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", cluster.ports["https"]), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in ("TLSv1.3", "TLSv1.2")
    # Plain HTTP is sent to HTTPS.
    redirect = httpx.get(f"http://127.0.0.1:{cluster.ports['http']}/api/products/", timeout=10)
    assert redirect.status_code == 301
    assert (
        redirect.headers["location"] == f"https://127.0.0.1:{cluster.ports['https']}/api/products/"
    )


def test_wss_through_nginx_reaches_the_websocket_server(cluster: Cluster) -> None:
    import websockets

    token = cluster.buyers()[0]

    async def conversation() -> tuple[str | None, dict[str, Any]]:
        async with websockets.connect(
            f"wss://localhost:{cluster.ports['https']}/ws/orders/",
            ssl=cluster.tls(),
            subprotocols=[websockets.Subprotocol("emporium.jwt"), websockets.Subprotocol(token)],
            open_timeout=10,
        ) as socket_:
            welcome = json.loads(await asyncio.wait_for(socket_.recv(), timeout=15))
            assert welcome["type"] == "welcome", welcome
            # An order placed through nginx and an app server reaches the socket.
            placed = await asyncio.to_thread(_checkout, cluster, token, str(uuid.uuid4()))
            assert placed.status_code == 201, placed.text
            while True:
                message = json.loads(await asyncio.wait_for(socket_.recv(), timeout=15))
                if message.get("order_id") == placed.json()["id"]:
                    return socket_.subprotocol, message

    subprotocol, message = asyncio.run(conversation())
    assert subprotocol == "emporium.jwt"
    assert message["type"] == "order.status_changed"
    assert message["to_status"] == "pending_payment"


def _checkout(cluster: Cluster, token: str, key: str, address: str = "127.0.0.1") -> httpx.Response:
    with cluster.client(address) as client:
        return client.post(
            "/api/orders/",
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        )


def _order_count(cluster: Cluster) -> int:
    return int(cluster.sql("SELECT count(*) FROM orders_order")[0][0])


def test_a_post_sent_to_a_server_that_dies_is_not_retried_elsewhere(cluster: Cluster) -> None:
    """app-1 is frozen (SIGSTOP) while checkouts are sent, then killed: the ones nginx
    had sent it answer 502 and are not repeated on app-2; GETs in the same window are."""
    buyers = cluster.buyers()[10:18]
    before = _order_count(cluster)
    cluster.kill("app-1", "STOP")
    try:
        with ThreadPoolExecutor(len(buyers) + 4) as pool:
            posts = [
                pool.submit(_checkout, cluster, token, str(uuid.uuid4()), f"127.0.0.{20 + i}")
                for i, token in enumerate(buyers)
            ]

            def read(index: int) -> int:
                with cluster.client(f"127.0.0.{40 + index}") as client:
                    return _anonymous_uncached(
                        client, f"/api/products/?page={1 + index % 2}"
                    ).status_code

            gets = [pool.submit(read, index) for index in range(4)]
            time.sleep(2.0)  # every request is with a server by now; app-1's wait
            cluster.kill("app-1", "KILL")
            statuses = Counter(future.result().status_code for future in posts)
            read_statuses = Counter(future.result() for future in gets)
    finally:
        cluster.restart("app-1")
    assert statuses[502] >= 1, statuses  # some checkouts had gone to the frozen app-1
    assert statuses[201] >= 1, statuses  # and the others to app-2
    assert statuses[201] + statuses[502] == len(buyers), statuses
    # The 502s were not placed anywhere: exactly the 201s exist.
    assert _order_count(cluster) - before == statuses[201]
    assert read_statuses == Counter({200: 4}), read_statuses
    assert eventually(lambda: cluster.healthy("app-1"), timeout=60)


def test_gets_fail_over_when_an_app_server_is_killed(cluster: Cluster) -> None:
    """Four clients read without pause while app-1 is kill -9'd: not one GET fails."""
    # nginx may still count app-1 out after the previous test; wait until it serves again.
    served_before = len(cluster.access_lines("app-1"))

    def app1_serves() -> bool:
        with cluster.client("127.0.0.60") as client:
            for page in (1, 2):
                _anonymous_uncached(client, f"/api/products/?page={page}")
        return len(cluster.access_lines("app-1")) > served_before

    assert eventually(app1_serves, timeout=30)
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def reader(index: int) -> None:
        with cluster.client(f"127.0.0.{70 + index}") as client:
            while not stop.is_set():
                status = _anonymous_uncached(
                    client, f"/api/products/?page={1 + index % 3}"
                ).status_code
                with lock:
                    statuses[status] += 1
                time.sleep(0.1)  # under the per-client rate

    threads = [threading.Thread(target=reader, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        served_by_app1 = len(cluster.access_lines("app-1"))
        cluster.kill("app-1", "KILL")
        time.sleep(3.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        cluster.restart("app-1")
    assert served_by_app1 > served_before + 1  # app-1 was in the rotation when it died
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) > 40
    assert eventually(lambda: cluster.healthy("app-1"), timeout=60)


def test_the_per_client_rate_limit_answers_429_with_retry_after(cluster: Cluster) -> None:
    def read(_: int) -> httpx.Response:
        with cluster.client("127.0.0.99") as client:
            return client.get("/api/products/")

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(read, range(120)))
    limited = [answer for answer in answers if answer.status_code == 429]
    assert limited, Counter(answer.status_code for answer in answers)
    assert {answer.status_code for answer in answers} <= {200, 429}
    assert all(answer.headers["retry-after"] == "1" for answer in limited)
    assert limited[0].json()["error"]["code"] == "throttled"
    # Another address is not affected.
    with cluster.client("127.0.0.98") as client:
        assert client.get("/api/products/").status_code == 200


def test_a_body_over_the_limit_is_refused_413_by_nginx(cluster: Cluster) -> None:
    with cluster.client("127.0.0.97") as client:
        answer = client.post(
            "/api/orders/",
            content=b"x" * (3 * 1024 * 1024),
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"


LEFTOVER_QUEUE = "default"


def _queued(channel: Any) -> int:
    declared = channel.queue_declare(queue=LEFTOVER_QUEUE, passive=True)
    return int(declared.message_count)


def test_cluster_stop_leaves_no_process_and_no_port(cluster: Cluster) -> None:
    state = cluster.state
    pids = [entry["pid"] for entry in state["processes"] if entry.get("pid")]
    ports = list(state["ports"].values())
    status = cluster.command("status", check=False)
    assert status.returncode == 0, status.stdout  # every process healthy, the restarted too
    assert [e["name"] for e in state["processes"] if not process_alive(e["pid"])] == []
    # A task still queued when the cluster stops would reach the next cluster's
    # worker, about rows of a database that no longer exists.
    cluster.command("kill", "worker", "--signal", "KILL")  # nobody consumes what follows
    with kombu.Connection(state["broker"]) as broker:
        channel = broker.default_channel
        channel.basic_publish(
            channel.prepare_message(
                "{}", content_type="application/json", content_encoding="utf-8"
            ),
            exchange="",
            routing_key=LEFTOVER_QUEUE,
        )
        assert eventually(lambda: _queued(channel) > 0, timeout=10)
    done = cluster.stop()
    assert done.returncode == 0, done.stderr
    with kombu.Connection(state["broker"]) as broker:
        assert _queued(broker.default_channel) == 0
    assert not cluster.directory.exists()
    assert [pid for pid in pids if process_alive(pid)] == []
    assert [port for port in ports if listening(port)] == []
