"""Reads on a real streaming replica: where they land, read-your-writes, and faults.

The module starts a PostgreSQL primary of its own (``initdb``), migrates the
application's database on it, makes a streaming replica with
``pg_basebackup -R`` and runs a granian app server on the production settings
with ``DATABASE_REPLICA_URLS`` naming the replica. Where a statement ran is
read from ``pg_stat_statements`` on each server, so a read that lands on the
primary instead of the replica (or the other way round) fails the test.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import transaction
from django.test import RequestFactory

from conftest import require_service
from deploy.postgres import pgcluster
from emporium.core.db import replicas
from tests.support.postgres import (
    APP_DATABASE,
    ROOT,
    AppServer,
    app_database_create,
    app_environment,
    app_server_start,
    require_postgres_binaries,
    scratch_directory,
    seed,
    statement_calls,
    statements_reset,
)
from tests.support.processes import TcpProxy, free_port, wait_until

pytestmark = pytest.mark.cluster

MAX_LAG_SECONDS = 3.0
HEALTH_SECONDS = 0.2
PRODUCT_READS = "%product%"
ORDER_STATEMENTS = "%order%"
SEARCH_READS = "%search_vector%"
VOCABULARY_READS = "%search_vocabulary%"


@dataclass
class Topology:
    primary: pgcluster.Cluster
    replica: pgcluster.Cluster
    server: AppServer
    product: int
    tokens: list[str]
    environment: dict[str, str]  # the app servers' (their keys sign the tokens)

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.server.url + path, headers=headers, timeout=10)

    def post(self, path: str, token: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return httpx.post(
            self.server.url + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    def replica_status(self) -> dict[str, Any]:
        body = httpx.get(self.server.url + "/readyz", timeout=10).json()
        status: dict[str, Any] = body["replicas"]["replica_0"]
        return status

    def replica_becomes(self, status: str, timeout: float = 20) -> bool:
        return wait_until(lambda: self.replica_status()["status"] == status, timeout=timeout)

    def replica_caught_up(self) -> bool:
        primary_lsn = self.primary.sql("SELECT pg_current_wal_lsn()")
        return (
            self.replica.sql(f"SELECT pg_last_wal_replay_lsn() >= '{primary_lsn}'::pg_lsn") == "t"
        )


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    require_service("REDIS_URL")
    require_postgres_binaries()
    logs = tmp_path_factory.mktemp("replicas")
    with scratch_directory() as base:
        primary = pgcluster.primary_create(base / "primary", port=free_port())
        replica: pgcluster.Cluster | None = None
        server: AppServer | None = None
        try:
            environment = app_environment(primary.url(APP_DATABASE))
            app_database_create(primary, environment)
            seeded = seed(environment, buyers=6)
            replica = pgcluster.replica_create(
                base / "replica", port=free_port(), primary_port=primary.port
            )
            assert pgcluster.replica_wait_streaming(primary)
            server = app_server_start(
                {
                    **environment,
                    "DATABASE_REPLICA_URLS": replica.url(APP_DATABASE),
                    "DATABASE_REPLICA_MAX_LAG_SECONDS": str(MAX_LAG_SECONDS),
                    "DATABASE_REPLICA_HEALTH_SECONDS": str(HEALTH_SECONDS),
                },
                logs / "granian.log",
            )
            yield Topology(
                primary=primary,
                replica=replica,
                server=server,
                product=int(seeded["product"]),  # type: ignore[call-overload]
                tokens=list(seeded["tokens"]),  # type: ignore[call-overload]
                environment=environment,
            )
        finally:
            if server is not None:
                server.stop()
            if replica is not None:
                replica.stop(mode="immediate")
            primary.stop(mode="immediate")


@pytest.fixture
def healthy(topology: Topology) -> Topology:
    """The replica running, streaming, replaying and found usable by the app server."""
    if not topology.replica.running():
        topology.replica.start()
    topology.replica.sql("SELECT pg_wal_replay_resume()")
    assert wait_until(topology.replica_caught_up, timeout=20)
    assert topology.replica_becomes("ok")
    return topology


def _stock(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.json()["stock_quantity"])


def test_anonymous_and_signed_in_reads_land_on_the_replica(healthy: Topology) -> None:
    statements_reset(healthy.primary, healthy.replica)
    token = healthy.tokens[0]
    for _ in range(10):
        assert healthy.get("/api/products/").status_code == 200  # the lean gateway
        assert healthy.get(f"/api/products/{healthy.product}/", token).status_code == 200  # DRF

    assert statement_calls(healthy.replica, PRODUCT_READS) >= 20
    assert statement_calls(healthy.primary, PRODUCT_READS) == 0


def test_searches_and_suggestions_land_on_the_replica(healthy: Topology) -> None:
    """Search runs raw SQL, which the router never sees: it asks the router's rule itself."""
    statement = f"SELECT name FROM catalog_product WHERE id = {healthy.product:d}"  # noqa: S608 - an int
    name = healthy.primary.sql(statement, database=APP_DATABASE)
    word = name.split()[0].lower()
    statements_reset(healthy.primary, healthy.replica)
    token = healthy.tokens[5]
    for client in (None, token):
        found = healthy.get(f"/api/search/?q={word}", client)
        assert found.status_code == 200, found.text
        assert healthy.product in [hit["id"] for hit in found.json()["results"]]
        suggested = healthy.get(f"/api/search/suggest/?q={word[:3]}", client)
        assert suggested.status_code == 200, suggested.text
        assert word in suggested.json()["completions"]

    assert statement_calls(healthy.replica, SEARCH_READS) >= 2
    assert statement_calls(healthy.replica, VOCABULARY_READS) >= 2
    assert statement_calls(healthy.primary, SEARCH_READS) == 0
    assert statement_calls(healthy.primary, VOCABULARY_READS) == 0


def test_checkout_and_its_reads_stay_on_the_primary_and_the_writer_reads_its_order(
    healthy: Topology,
) -> None:
    token = healthy.tokens[1]
    before = _stock(healthy.get(f"/api/products/{healthy.product}/"))
    statements_reset(healthy.primary, healthy.replica)

    added = healthy.post("/api/cart/items/", token, {"product": healthy.product, "quantity": 3})
    assert added.status_code == 201, added.text
    placed = healthy.post("/api/orders/", token)
    assert placed.status_code == 201, placed.text
    # The writer, at once: its own order and its cart as it left it.
    orders = healthy.get("/api/orders/", token)
    assert orders.status_code == 200
    assert [order["id"] for order in orders.json()["results"]] == [placed.json()["id"]]
    assert healthy.get("/api/cart/", token).json()["items"] == []

    assert statement_calls(healthy.replica, ORDER_STATEMENTS) == 0
    assert statement_calls(healthy.primary, ORDER_STATEMENTS) > 0
    assert wait_until(
        lambda: _stock(healthy.get(f"/api/products/{healthy.product}/")) == before - 3
    )


def test_a_writer_reads_its_writes_from_a_stale_replica_that_others_read(
    healthy: Topology,
) -> None:
    """Replay paused: the replica is stale but within the lag bound, so it is still used."""
    writer, other = healthy.tokens[2], healthy.tokens[3]
    before = _stock(healthy.get(f"/api/products/{healthy.product}/"))
    healthy.replica.sql("SELECT pg_wal_replay_pause()")
    try:
        assert wait_until(
            lambda: healthy.replica.sql("SELECT pg_get_wal_replay_pause_state()") == "paused"
        )
        added = healthy.post(
            "/api/cart/items/", writer, {"product": healthy.product, "quantity": 2}
        )
        assert added.status_code == 201
        placed = healthy.post("/api/orders/", writer)
        assert placed.status_code == 201
        written_at = time.monotonic()

        # Within the pin window the writer sees its order and the stock it took, at once...
        mine = healthy.get("/api/orders/", writer).json()["results"]
        assert placed.json()["id"] in [order["id"] for order in mine]
        assert _stock(healthy.get(f"/api/products/{healthy.product}/", writer)) == before - 2
        # ...while another client still reads the stale replica (the proof that it is used).
        assert _stock(healthy.get(f"/api/products/{healthy.product}/", other)) == before
        assert _stock(healthy.get(f"/api/products/{healthy.product}/")) == before
        assert time.monotonic() - written_at < MAX_LAG_SECONDS  # all of it inside the bound

        # Past the bound the replica is skipped: everyone reads the primary.
        assert healthy.replica_becomes("lagging", timeout=MAX_LAG_SECONDS + 5)
        statements_reset(healthy.replica)
        assert _stock(healthy.get(f"/api/products/{healthy.product}/", other)) == before - 2
        assert _stock(healthy.get(f"/api/products/{healthy.product}/")) == before - 2
        assert statement_calls(healthy.replica, PRODUCT_READS) == 0
    finally:
        healthy.replica.sql("SELECT pg_wal_replay_resume()")
    # Replay resumed: the replica is used again, by itself.
    assert healthy.replica_becomes("ok")
    statements_reset(healthy.replica)
    assert _stock(healthy.get(f"/api/products/{healthy.product}/")) == before - 2
    assert statement_calls(healthy.replica, PRODUCT_READS) > 0


def test_a_quiet_primary_does_not_make_a_replica_with_nothing_to_hide_look_lagging(
    healthy: Topology,
) -> None:
    """Nothing commits for longer than the bound, then WAL without a transaction arrives.

    The replica's newest replayed transaction is then older than the bound while
    it has something not yet replayed (here a checkpoint record, held back by a
    paused replay). That is no reason to skip it: what is pending arrived after
    the last probe that found it caught up, so its data is at most that stale.
    """
    time.sleep(MAX_LAG_SECONDS + 1)
    # (NULL: it has replayed no transaction since it started, older still.)
    since_commit = healthy.replica.sql(
        "SELECT COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()),"
        " 'Infinity')"
    )
    assert float(since_commit) > MAX_LAG_SECONDS
    assert healthy.replica_becomes("ok")
    healthy.replica.sql("SELECT pg_wal_replay_pause()")
    try:
        assert wait_until(
            lambda: healthy.replica.sql("SELECT pg_get_wal_replay_pause_state()") == "paused"
        )
        healthy.primary.sql("CHECKPOINT")
        assert wait_until(
            lambda: (
                healthy.replica.sql("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")
                == "t"
            )
        )
        pending_at = time.monotonic()
        statuses = []
        while time.monotonic() - pending_at < MAX_LAG_SECONDS / 2:
            statuses.append(healthy.replica_status()["status"])
            time.sleep(HEALTH_SECONDS / 2)
        assert set(statuses) == {"ok"}
        statements_reset(healthy.replica)
        assert healthy.get(f"/api/products/{healthy.product}/").status_code == 200
        assert statement_calls(healthy.replica, PRODUCT_READS) > 0
        # Held back past the bound, the same pending WAL does make it lagging.
        assert healthy.replica_becomes("lagging", timeout=MAX_LAG_SECONDS + 5)
    finally:
        healthy.replica.sql("SELECT pg_wal_replay_resume()")
    assert healthy.replica_becomes("ok")


def test_a_stopped_replica_degrades_to_the_primary_without_an_error_and_comes_back(
    healthy: Topology,
) -> None:
    token = healthy.tokens[4]
    healthy.replica.stop(mode="fast")
    # At once, before any probe noticed: every read is answered (from the primary).
    answers = [healthy.get("/api/products/").status_code for _ in range(20)]
    answers += [
        healthy.get(f"/api/products/{healthy.product}/", token).status_code for _ in range(20)
    ]
    assert answers == [200] * 40

    ready = httpx.get(healthy.server.url + "/readyz", timeout=10)
    assert ready.status_code == 200  # a lost replica never fails readiness
    assert ready.json()["replicas"]["replica_0"]["status"] == "down"
    metrics = httpx.get(healthy.server.url + "/metrics", timeout=10).text
    assert 'emporium_database_replica_up{replica="replica_0"} 0.0' in metrics

    healthy.replica.start()
    assert healthy.replica_becomes("ok")
    statements_reset(healthy.primary, healthy.replica)
    for _ in range(5):
        assert healthy.get("/api/products/").status_code == 200
    assert statement_calls(healthy.replica, PRODUCT_READS) >= 5
    assert statement_calls(healthy.primary, PRODUCT_READS) == 0
    metrics = httpx.get(healthy.server.url + "/metrics", timeout=10).text
    assert 'emporium_database_replica_up{replica="replica_0"} 1.0' in metrics
    assert 'emporium_database_replication_lag_seconds{replica="replica_0"}' in metrics


def test_a_replica_lost_under_a_query_is_read_again_from_the_primary(
    healthy: Topology, tcp_proxy: Callable[[str, int], TcpProxy], tmp_path: Path
) -> None:
    """The replica's connections break while queries are on them: the reads are answered.

    A second app server reaches the replica through a proxy. Once its pool holds
    connections to the replica, every chunk is held for a while, so the next reads
    are still on the wire when the proxy resets its connections and refuses new
    ones. Each read (the lean gateway's product list, a DRF detail, a search) must
    answer 200 with the data, read again from the primary.
    """
    proxy = tcp_proxy("127.0.0.1", healthy.replica.port)
    environment = {
        **healthy.environment,
        "DATABASE_REPLICA_URLS": f"postgres://postgres:postgres@{proxy.url_host}/{APP_DATABASE}",
        "DATABASE_REPLICA_MAX_LAG_SECONDS": str(MAX_LAG_SECONDS),
        # Probed again only after the break: the break must come from the queries.
        "DATABASE_REPLICA_HEALTH_SECONDS": "5",
    }
    server = app_server_start(environment, tmp_path / "granian.log")
    try:
        statement = f"SELECT name FROM catalog_product WHERE id = {healthy.product:d}"  # noqa: S608 - an int
        word = healthy.primary.sql(statement, database=APP_DATABASE).split()[0].lower()
        token = healthy.tokens[3]
        paths = [
            ("/api/products/", None),
            (f"/api/products/{healthy.product}/", token),
            (f"/api/search/?q={word}", None),
        ]

        def get(path: str, client: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {client}"} if client else {}
            return httpx.get(server.url + path, headers=headers, timeout=30)

        def replica_status() -> str:
            body = httpx.get(server.url + "/readyz", timeout=10).json()
            return str(body["replicas"]["replica_0"]["status"])

        assert wait_until(lambda: replica_status() == "ok", timeout=20)
        statements_reset(healthy.primary, healthy.replica)
        for path, client in paths * 2:  # the pool's connections to the replica opened
            assert get(path, client).status_code == 200
        assert statement_calls(healthy.replica, PRODUCT_READS) >= 2
        assert statement_calls(healthy.replica, SEARCH_READS) >= 1
        assert statement_calls(healthy.primary, PRODUCT_READS) == 0

        proxy.latency_seconds = 0.5
        answers: dict[str, httpx.Response] = {}
        readers = [
            threading.Thread(target=lambda p=path, c=client: answers.update({p: get(p, c)}))
            for path, client in paths
        ]
        for reader in readers:
            reader.start()
        # The queries are on the wire (each chunk held half a second) when the proxy breaks.
        assert wait_until(lambda: proxy.state()["open_connections"] != 0, timeout=5)
        time.sleep(0.25)
        proxy.cut()
        for reader in readers:
            reader.join(timeout=30)

        for path, _ in paths:
            assert answers[path].status_code == 200, (path, answers[path].text)
        assert answers["/api/products/"].json()["results"]
        assert _stock(answers[f"/api/products/{healthy.product}/"]) >= 0
        found = answers[f"/api/search/?q={word}"].json()["results"]
        assert healthy.product in [hit["id"] for hit in found]
        # Read again from the primary, and the replica skipped from then on.
        assert statement_calls(healthy.primary, PRODUCT_READS) >= 2
        assert statement_calls(healthy.primary, SEARCH_READS) >= 1
        assert replica_status() == "down"
    finally:
        proxy.restore()
        server.stop()


def test_failover_after_the_primary_is_killed_keeps_every_acknowledged_order(
    healthy: Topology,
) -> None:
    """Synchronous replication: a commit is acknowledged once the replica has flushed it.

    Checkouts run while the primary is SIGKILLed; the replica is promoted by
    ``deploy/postgres/failover.sh``; every order answered 201 must be on it.
    This ends the module's topology, so it runs last of the tests that use it.
    """
    healthy.primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'replica'")
    healthy.primary.sql("SELECT pg_reload_conf()")
    assert wait_until(
        lambda: healthy.primary.sql("SELECT sync_state FROM pg_stat_replication") == "sync"
    )
    token = healthy.tokens[5]
    acknowledged: list[int] = []
    failures: list[int] = []
    stop = threading.Event()

    def buy() -> None:
        while not stop.is_set():
            try:
                added = healthy.post("/api/cart/items/", token, {"product": healthy.product})
                placed = healthy.post("/api/orders/", token) if added.status_code == 201 else added
            except httpx.TransportError:
                failures.append(0)
                continue
            if placed.status_code == 201:
                acknowledged.append(int(placed.json()["id"]))
            else:
                failures.append(placed.status_code)

    buyer = threading.Thread(target=buy)
    buyer.start()
    assert wait_until(lambda: len(acknowledged) >= 10, timeout=30)
    healthy.primary.kill()  # SIGKILL, mid-checkout
    killed_at = time.monotonic()
    time.sleep(0.5)
    stop.set()
    buyer.join(timeout=30)

    started = time.monotonic()
    promoted = subprocess.run(  # noqa: S603 - the project's own script
        ["/bin/bash", str(ROOT / "deploy" / "postgres" / "failover.sh")],
        env={
            **os.environ,
            "OLD_PRIMARY": str(healthy.primary.data),
            "REPLICA": str(healthy.replica.data),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    promotion_seconds = time.monotonic() - started
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert not healthy.replica.in_recovery()

    present = healthy.replica.sql(
        "SELECT string_agg(id::text, ',') FROM orders_order", database=APP_DATABASE
    )
    on_promoted = {int(order_id) for order_id in present.split(",")}
    lost = sorted(set(acknowledged) - on_promoted)
    assert lost == []
    # Without a primary, requests were refused as a busy service, never a 500.
    assert set(failures) <= {503}
    healthy.replica.sql("CREATE TABLE failover_writable (id int)", database=APP_DATABASE)
    print(
        f"\nfailover: {len(acknowledged)} acknowledged orders, {len(lost)} lost (RPO 0 with "
        f"synchronous replication); promotion {promotion_seconds:.2f} s, "
        f"{time.monotonic() - killed_at:.1f} s from the kill to a writable primary; "
        f"{len(failures)} requests failed while the primary was gone"
    )


# -- the router's decisions, in this process -------------------------------------------------


@pytest.fixture
def one_usable_replica(settings: Any) -> Iterator[str]:
    """A replica alias the router believes usable (its last probe said so, recently)."""
    alias = "replica_under_test"
    settings.DATABASE_REPLICA_ALIASES = (alias,)
    settings.DATABASE_REPLICA_HEALTH_SECONDS = 3600
    replicas.monitors_reset()
    replicas._monitor(alias)._record("ok", 0.0)
    yield alias
    replicas.monitors_reset()


@pytest.mark.django_db(transaction=True)
def test_reads_in_a_transaction_after_a_write_or_outside_a_safe_request_go_to_the_primary(
    one_usable_replica: str,
) -> None:
    router = replicas.PrimaryReplicaRouter()
    assert router.db_for_read(None) == "default"  # no request: tasks, commands
    with replicas.replica_reads():
        assert router.db_for_read(None) == one_usable_replica
        with transaction.atomic():
            assert router.db_for_read(None) == "default"
        assert router.db_for_read(None) == one_usable_replica
        assert router.db_for_write(None) == "default"
        assert router.db_for_read(None) == "default"  # the rest of the request


def test_the_middleware_allows_replica_reads_only_for_safe_requests_of_clients_not_pinned(
    one_usable_replica: str,
) -> None:
    seen: list[str] = []

    def view(request: Any) -> Any:
        from django.http import HttpResponse

        seen.append(replicas.read_alias())
        return HttpResponse()

    middleware = replicas.ReplicaRoutingMiddleware(view)
    factory = RequestFactory()
    token = {"HTTP_AUTHORIZATION": "Bearer one-client"}
    middleware(factory.get("/api/products/", **token))
    middleware(factory.post("/api/orders/", **token))
    middleware(factory.get("/api/orders/", **token))  # pinned by the write
    middleware(factory.get("/api/orders/", HTTP_AUTHORIZATION="Bearer another-client"))
    middleware(factory.get("/api/products/"))
    assert seen == [
        one_usable_replica,
        "default",
        "default",
        one_usable_replica,
        one_usable_replica,
    ]
    assert replicas.read_alias() == "default"  # nothing leaks out of the request
