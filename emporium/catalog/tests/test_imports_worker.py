"""Imports through the real path: the API commits, RabbitMQ carries the task, a worker applies it.

Needs PostgreSQL and RabbitMQ (a worker process cannot share the test's
transaction, so these tests commit for real).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from emporium.accounts.roles import Role
from emporium.catalog.models import Product, ProductImport, ProductImportStatus
from emporium.core.tests.factories import StaffFactory, client_for
from tests.support.processes import WorkerProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/products/imports/"
HEADER = "sku,name,description,price,stock,category,attributes\n"


@pytest.fixture
def import_dir(settings: Any, tmp_path: Path) -> Path:
    directory = tmp_path / "imports"
    settings.CATALOG_IMPORT_DIR = directory
    return directory


def _worker_start(start_worker: Any, import_dir: Path, *, chunk_rows: int) -> WorkerProcess:
    return start_worker(
        queues="default",
        extra_env={
            "CATALOG_IMPORT_DIR": str(import_dir),
            "CATALOG_IMPORT_CHUNK_ROWS": str(chunk_rows),
        },
    )


@pytest.fixture
def worker(
    broker_url: str, database_url: str, import_dir: Path, start_worker: Any
) -> WorkerProcess:
    # Chunks of 100 rows: a file of a few hundred rows is several chunks.
    return _worker_start(start_worker, import_dir, chunk_rows=100)


@pytest.fixture
def slow_worker(
    broker_url: str, database_url: str, import_dir: Path, start_worker: Any
) -> WorkerProcess:
    # Chunks of 10 rows: each chunk is a transaction of a few statements and a
    # commit, so 2,000 of them take seconds however fast the rows themselves go,
    # and a cancel sent after the first arrives while most of the file is to do.
    return _worker_start(start_worker, import_dir, chunk_rows=10)


def _manager() -> APIClient:
    return client_for(StaffFactory(role=Role.CATALOG_MANAGER))


def _finished(import_id: int) -> bool:
    return ProductImport.objects.get(pk=import_id).status in (
        ProductImportStatus.COMPLETED,
        ProductImportStatus.CANCELLED,
        ProductImportStatus.FAILED,
    )


def test_an_uploaded_file_is_applied_by_a_worker(worker: WorkerProcess) -> None:
    manager = _manager()
    rows = [f"W-{n:04},Worker item {n},,{n}.50,{n},Depot > Shelf {n % 3},\n" for n in range(300)]
    body = (HEADER + "".join(rows) + "W-BAD,,,1,1,Depot,\n").encode()

    response = manager.generic("POST", URL, body, "text/csv")

    assert response.status_code == 202
    import_id = response.json()["id"]
    assert wait_until(lambda: _finished(import_id), timeout=60), worker.log()
    progress = manager.get(f"{URL}{import_id}/").json()
    assert progress["status"] == "completed"
    assert (progress["rows_created"], progress["rows_failed"]) == (300, 1)
    assert Product.objects.filter(sku__startswith="W-").count() == 300
    assert Product.objects.get(sku="W-0007").price == pytest.approx(7.5)
    again = manager.generic("POST", URL, body, "text/csv")
    assert again.status_code == 200
    assert again.json()["id"] == import_id


def test_cancelling_a_running_import_stops_it_between_chunks(slow_worker: WorkerProcess) -> None:
    worker = slow_worker
    manager = _manager()
    total = 20_000  # 2,000 chunks
    body = (
        HEADER + "".join(f"C-{n:06},Cancelled item {n},,1.00,1,Bulk,\n" for n in range(total))
    ).encode()
    import_id = manager.generic("POST", URL, body, "text/csv").json()["id"]
    assert wait_until(
        lambda: ProductImport.objects.get(pk=import_id).chunks_done >= 1, timeout=60
    ), worker.log()

    response = manager.post(f"{URL}{import_id}/cancel/")

    assert response.status_code == 200
    assert response.json()["cancel_requested"] is True
    assert wait_until(lambda: _finished(import_id), timeout=60), worker.log()
    item = ProductImport.objects.get(pk=import_id)
    assert item.status == ProductImportStatus.CANCELLED
    applied = Product.objects.filter(sku__startswith="C-").count()
    # Whole chunks only, and exactly what the import says it got through.
    assert 0 < applied < total
    assert applied == item.rows_created == item.rows_processed
    assert item.byte_offset < item.size_bytes
