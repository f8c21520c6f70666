"""The restore drill: a base backup, WAL archiving, and a point-in-time restore that is checked.

A private primary archives its WAL (``archive_command``) into a backup
directory; ``deploy/postgres/pgcluster.py backup`` (what ``make backup`` runs)
takes a base backup and a ``pg_dump`` of the application's database. Orders
and payments are placed through the application's own services
(``order_place``, ``payment_start``), the moment is noted with what existed
then (row counts and a checksum of every row of orders, order items and
payments), more are placed, and the backup is restored to the noted moment
into a scratch cluster (what ``make restore TARGET_TIME=...`` runs). The
restored tables must equal the noted ones exactly. The drill prints its RPO
(what the restore lost of what the noted moment held) and its RTO (the
restore's wall time, from nothing to a cluster accepting writes).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from conftest import require_service
from deploy.postgres import pgcluster
from tests.support.postgres import (
    APP_DATABASE,
    app_database_create,
    app_environment,
    manage,
    require_postgres_binaries,
    scratch_directory,
    seed,
)
from tests.support.processes import free_port, wait_until

pytestmark = pytest.mark.cluster

TABLES = ("orders_order", "orders_orderitem", "payments_payment")

# Each buyer fills a cart, checks out (order_place, the one-statement checkout) and
# starts a card payment (payment_start), through the services the API calls.
_PLACE = """
import json
from emporium.accounts.models import User
from emporium.carts.services import cart_item_add
from emporium.catalog.models import Product
from emporium.orders.services import order_place
from emporium.payments.services import payment_start
product = Product.objects.get(pk={product})
placed = []
for user in User.objects.order_by("pk")[{first}:{first} + {count}]:
    cart_item_add(user=user, product=product, quantity=2)
    order = order_place(user_id=user.pk)
    payment_start(order=order, user=user, payment_method="card", token="tok_visa")
    placed.append(order.pk)
print(json.dumps(placed))
"""


def _place(environment: dict[str, str], *, product: int, first: int, count: int) -> list[int]:
    output = manage(
        environment, "shell", "-c", _PLACE.format(product=product, first=first, count=count)
    )
    placed: list[int] = json.loads(output.strip().splitlines()[-1])
    return placed


def _contents(cluster: pgcluster.Cluster) -> dict[str, tuple[int, str]]:
    """Per table: the row count and an md5 of every row, in primary-key order."""
    found = {}
    for table in TABLES:
        row = cluster.sql(
            f"SELECT count(*) || ' ' || md5(COALESCE(string_agg(t::text, '|' ORDER BY t.id), '')) "  # noqa: S608 - the constants above
            f"FROM {table} t",
            database=APP_DATABASE,
        )
        count, digest = row.split(" ")
        found[table] = (int(count), digest)
    return found


def _archived(primary: pgcluster.Cluster, archive: Path) -> bool:
    """Whether the segment holding everything written so far is in the archive."""
    segment = primary.sql("SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")
    return (archive / segment).exists()


def test_a_restore_to_a_noted_moment_holds_exactly_the_orders_and_payments_of_that_moment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_service("REDIS_URL")
    require_postgres_binaries()
    with scratch_directory() as base:
        backups = base / "backups"
        primary = pgcluster.primary_create(
            base / "primary", port=free_port(), archive=backups / "wal"
        )
        restored: pgcluster.Cluster | None = None
        try:
            environment = app_environment(primary.url(APP_DATABASE))
            app_database_create(primary, environment)
            product = int(seed(environment, buyers=16)["product"])  # type: ignore[call-overload]

            taken = pgcluster.backup_take(
                backups, port=primary.port, databases=[APP_DATABASE], keep=2
            )
            assert (taken.path / "base.tar.gz").exists()
            assert list((backups / "dumps").glob(f"{APP_DATABASE}-*.dump"))

            before = _place(environment, product=product, first=0, count=8)
            noted = _contents(primary)
            assert noted["orders_order"][0] == len(before) == noted["payments_payment"][0]
            time.sleep(0.2)  # commit timestamps on either side of the target, never equal
            target = dt.datetime.now(dt.UTC)
            time.sleep(0.2)
            after = _place(environment, product=product, first=8, count=8)
            assert len(after) == 8
            assert _contents(primary)["orders_order"][0] == 16

            # The newest WAL reaches the archive (archive_timeout would do it within a minute).
            primary.sql("SELECT pg_switch_wal()")
            assert wait_until(lambda: _archived(primary, backups / "wal"), timeout=30)

            started = time.monotonic()
            restored = pgcluster.restore(
                backups, base / "restored", port=free_port(), target_time=target
            )
            recovery_seconds = time.monotonic() - started

            assert not restored.in_recovery()  # promoted: it takes writes
            assert _contents(restored) == noted
            restored_ids = restored.sql(
                "SELECT string_agg(id::text, ',' ORDER BY id) FROM orders_order",
                database=APP_DATABASE,
            )
            assert [int(i) for i in restored_ids.split(",")] == sorted(before)
            restored.sql("CREATE TABLE restore_drill_writable (id int)", database=APP_DATABASE)
            with capsys.disabled():
                print(
                    f"\nrestore drill: {noted['orders_order'][0]} orders, "
                    f"{noted['orders_orderitem'][0]} items, {noted['payments_payment'][0]} "
                    "payments at the target, all restored (RPO to the target: 0 rows); "
                    f"RTO {recovery_seconds:.1f} s (base backup extracted, WAL replayed, promoted)"
                )
        finally:
            if restored is not None:
                restored.stop(mode="immediate")
            primary.stop(mode="immediate")


def test_retention_keeps_the_newest_base_backups_and_only_the_wal_they_need() -> None:
    require_postgres_binaries()
    with scratch_directory() as base:
        backups = base / "backups"
        primary = pgcluster.primary_create(
            base / "primary", port=free_port(), archive=backups / "wal"
        )
        try:
            taken = []
            for _ in range(3):
                taken.append(pgcluster.backup_take(backups, port=primary.port, keep=2))
                primary.sql("SELECT pg_switch_wal()")
            kept = pgcluster.base_backups(backups)
            assert [backup.path for backup in kept] == [taken[1].path, taken[2].path]
            assert not taken[0].path.exists()
            segments = sorted(
                path.name[:24]
                for path in (backups / "wal").iterdir()
                if len(path.name) == 24 or path.name.endswith(".backup")
            )
            assert segments, "the archive holds WAL"
            assert min(segments) == kept[0].start_segment  # nothing older than needed
        finally:
            primary.stop(mode="immediate")
