"""Bulk catalog import: upload, rows applied by SKU, errors, dedup, cancellation, caches, search.

The API stores the file and queues the run after commit; a test's transaction
never commits, so these tests apply the import with ``services.import_run``
(what the task runs) inside ``committed()``, which fires the on-commit hooks
(cache bumps, dashboard pushes) as a real commit would. The run through
RabbitMQ and a real worker is in test_imports_worker.py.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from emporium.accounts.roles import Role
from emporium.catalog import caching
from emporium.catalog.imports import services
from emporium.catalog.imports.chunks import ChunkStart, ReadAhead
from emporium.catalog.imports.storage import ImportTooLarge, upload_store
from emporium.catalog.imports.upsert import UpsertRow, products_upsert
from emporium.catalog.models import (
    Category,
    Product,
    ProductImport,
    ProductImportError,
    ProductImportStatus,
)
from emporium.catalog.tests.support import error_of, product_url
from emporium.core import cache as response_cache
from emporium.core.tests.factories import (
    CategoryFactory,
    StaffFactory,
    UserFactory,
    client_for,
)
from emporium.realtime import groups
from emporium.realtime.transport import PUBLISHER, channel_for

pytestmark = pytest.mark.django_db

URL = "/api/products/imports/"
HEADER = "sku,name,description,price,stock,category,attributes\n"
Committed = Callable[[], AbstractContextManager[Any]]


@pytest.fixture(autouse=True)
def import_dir(settings: Any, tmp_path: Path) -> Path:
    directory = tmp_path / "imports"
    settings.CATALOG_IMPORT_DIR = directory
    return directory


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Committed:
    @contextmanager
    def block() -> Iterator[None]:
        with django_capture_on_commit_callbacks(execute=True):
            yield

    return block


@pytest.fixture
def manager() -> APIClient:
    return client_for(StaffFactory(role=Role.CATALOG_MANAGER))


def csv_body(*rows: str, header: str = HEADER) -> bytes:
    return (header + "".join(f"{row}\n" for row in rows)).encode()


def ndjson_body(*rows: dict[str, Any]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def upload(client: APIClient, body: bytes, content_type: str = "text/csv", **params: str) -> Any:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return client.generic("POST", URL + (f"?{query}" if query else ""), body, content_type)


def run(committed: Committed, import_id: int) -> ProductImport:
    with committed():
        assert services.import_run(import_id=import_id) is False
    return ProductImport.objects.get(pk=import_id)


def product(sku: str) -> Product:
    return Product.objects.select_related("category").get(sku=sku)


def category_names(category: Category) -> list[str]:
    ids = [int(part) for part in category.path.strip("/").split("/")]
    by_id = dict(Category.objects.filter(pk__in=ids).values_list("pk", "name"))
    return [by_id[pk] for pk in ids]


def errors_csv(client: APIClient, import_id: int) -> list[list[str]]:
    response = client.get(f"{URL}{import_id}/errors.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


# -- happy paths ----------------------------------------------------------------------


def test_a_csv_file_creates_products_and_their_categories(
    manager: APIClient, committed: Committed
) -> None:
    body = csv_body(
        'LAMP-1,Desk lamp,Brass arm,19.90,5,Home > Lighting > Lamps,"{""color"": ""brass""}"',
        "LAMP-2,Floor lamp,Tall,49.5,0,Home > Lighting > Lamps,",
        "KETTLE-1,Kettle,,25,3,Home > Kitchen,{}",
    )

    response = upload(manager, body)

    assert response.status_code == 202
    created = response.json()
    assert created["status"] == "queued"
    assert created["format"] == "csv"
    assert created["encoding"] == "utf-8"
    assert created["size_bytes"] == len(body)
    item = run(committed, created["id"])
    assert item.status == ProductImportStatus.COMPLETED
    assert (item.rows_created, item.rows_updated, item.rows_failed) == (3, 0, 0)
    assert item.categories_created == 4  # Home, Lighting, Lamps, Kitchen
    lamp = product("LAMP-1")
    assert (lamp.name, lamp.description, lamp.price, lamp.stock_quantity) == (
        "Desk lamp",
        "Brass arm",
        Decimal("19.90"),
        5,
    )
    assert lamp.attributes == {"color": "brass"}
    assert category_names(lamp.category) == ["Home", "Lighting", "Lamps"]
    assert product("LAMP-2").category_id == lamp.category_id
    assert category_names(product("KETTLE-1").category) == ["Home", "Kitchen"]
    assert Category.objects.filter(name="Home").count() == 1
    body = manager.get(f"{URL}{item.pk}/").json()
    assert body["status"] == "completed"
    assert body["percent"] == 100.0
    assert body["rows_created"] == 3


def test_an_ndjson_file_creates_and_updates_products(
    manager: APIClient, committed: Committed
) -> None:
    existing = product_of_import(manager, committed, "OLD-1", "Old name", "1.00")
    body = ndjson_body(
        {"sku": "OLD-1", "name": "New name", "price": 2.5, "stock": 7, "category": "Garden"},
        {
            "sku": "NEW-1",
            "name": "Watering can",
            "description": "Green",
            "price": "12.00",
            "stock": 4,
            "category": "Garden > Tools",
            "attributes": {"litres": 5, "tags": ["metal"]},
        },
    )

    response = upload(manager, body, "application/x-ndjson")

    assert response.status_code == 202
    assert response.json()["format"] == "ndjson"
    item = run(committed, response.json()["id"])
    assert (item.rows_created, item.rows_updated, item.rows_unchanged) == (1, 1, 0)
    updated = product("OLD-1")
    assert updated.pk == existing.pk
    assert (updated.name, updated.price, updated.stock_quantity) == ("New name", Decimal("2.50"), 7)
    assert product("NEW-1").attributes == {"litres": 5, "tags": ["metal"]}
    assert category_names(product("NEW-1").category) == ["Garden", "Tools"]


def test_file_format_in_the_query_overrides_the_content_type(
    manager: APIClient, committed: Committed
) -> None:
    body = ndjson_body({"sku": "Q-1", "name": "Lamp", "price": "9.00", "category": "Home"})

    response = upload(manager, body, "application/octet-stream", file_format="ndjson")

    assert response.status_code == 202, response.content
    assert response.json()["format"] == "ndjson"
    assert run(committed, response.json()["id"]).rows_created == 1


def product_of_import(
    client: APIClient, committed: Committed, sku: str, name: str, price: str
) -> Product:
    response = upload(client, csv_body(f"{sku},{name},,{price},1,Garden,"))
    run(committed, response.json()["id"])
    return product(sku)


def test_a_multipart_upload_is_streamed_like_a_raw_body(
    manager: APIClient, committed: Committed, import_dir: Path
) -> None:
    file = io.BytesIO(csv_body("MP-1,Mug,,3.50,10,Kitchen,"))
    file.name = "catalog.csv"

    response = manager.post(URL, {"file": file}, format="multipart")

    assert response.status_code == 202
    assert response.json()["file_name"] == "catalog.csv"
    run(committed, response.json()["id"])
    assert product("MP-1").price == Decimal("3.50")
    # Stored while queued, removed once applied; no partial upload left either.
    assert list(import_dir.iterdir()) == []


# -- bad rows, bad files ----------------------------------------------------------------


def test_bad_rows_are_recorded_and_the_others_imported(
    manager: APIClient, committed: Committed
) -> None:
    too_long = "x" * 201
    body = csv_body(
        "GOOD-1,Good one,,1.00,1,Misc,",
        ",No sku,,1.00,1,Misc,",
        "BAD-PRICE,Negative,,-3.00,1,Misc,",
        "BAD-STOCK,Stock,,1.00,lots,Misc,",
        f"BAD-NAME,{too_long},,1.00,1,Misc,",
        "BAD-ATTR,Attributes,,1.00,1,Misc,[1]",
        "GOOD-2,Good two,,2.00,2,Misc,",
    )
    response = upload(manager, body)
    item = run(committed, response.json()["id"])

    assert item.status == ProductImportStatus.COMPLETED
    assert (item.rows_created, item.rows_failed, item.rows_processed) == (2, 5, 7)
    assert set(Product.objects.values_list("sku", flat=True)) == {"GOOD-1", "GOOD-2"}
    rows = errors_csv(manager, item.pk)
    assert rows[0] == ["row", "column", "message", "value"]
    assert (
        rows[1:]
        == [
            ["3", "sku", "is required", ""],
            ["4", "price", "must not be negative", "'-3.00"],  # quoted for spreadsheets
            ["5", "stock", "must be a whole number", "lots"],
            ["6", "name", "must be at most 200 characters", too_long[:200]],
            ["7", "attributes", "must be a JSON object", "[1]"],
        ]
    )


def test_a_header_without_the_required_columns_is_refused_and_nothing_is_kept(
    manager: APIClient, import_dir: Path
) -> None:
    response = upload(manager, b"sku,title,cost\nA,B,1\n")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "import_file_invalid"
    assert error["details"]["columns"] == ["Missing: name, price, category."]
    assert not ProductImport.objects.exists()
    assert list(import_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "text/csv", 400),  # empty
        (b"{}", "application/json", 415),
        (b"\xff\xfes\x00k\x00u\x00", "text/csv", 400),  # UTF-16
    ],
)
def test_files_that_cannot_be_imported_get_a_clear_4xx(
    manager: APIClient, import_dir: Path, body: bytes, content_type: str, status: int
) -> None:
    response = upload(manager, body, content_type)

    assert response.status_code == status
    error_of(response)
    assert not ProductImport.objects.exists()
    assert not import_dir.exists() or list(import_dir.iterdir()) == []


def test_an_upload_over_the_size_limit_is_a_413_in_the_error_shape(
    manager: APIClient, settings: Any, import_dir: Path
) -> None:
    settings.CATALOG_IMPORT_MAX_BYTES = 100
    body = csv_body(*[f"S-{n},Name {n},,1.00,1,Misc," for n in range(10)])

    response = upload(manager, body)

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "import_too_large"
    assert error["details"] == {"max_bytes": 100}
    assert not ProductImport.objects.exists()
    assert not import_dir.exists() or list(import_dir.iterdir()) == []


def test_the_stream_is_cut_at_the_limit_when_no_length_was_declared(
    settings: Any, import_dir: Path
) -> None:
    settings.CATALOG_IMPORT_MAX_BYTES = 1_000
    pieces_read = []

    def pieces() -> Iterator[bytes]:
        for number in range(100):
            pieces_read.append(number)
            yield b"x" * 300

    with pytest.raises(ImportTooLarge):
        upload_store(pieces=pieces())

    assert len(pieces_read) == 4  # stopped at the first piece past 1,000 bytes
    assert list(import_dir.iterdir()) == []


def test_customers_may_not_import_and_anonymous_callers_must_sign_in(
    api_client: APIClient,
) -> None:
    body = csv_body("S-1,Name,,1.00,1,Misc,")

    assert upload(client_for(UserFactory()), body).status_code == 403
    assert upload(client_for(StaffFactory(role=Role.SUPPORT)), body).status_code == 403
    assert upload(api_client, body).status_code == 401
    assert not ProductImport.objects.exists()


# -- encodings --------------------------------------------------------------------------


def test_a_utf8_file_with_a_byte_order_mark(manager: APIClient, committed: Committed) -> None:
    body = codecs.BOM_UTF8 + csv_body("BOM-1,Crème brûlée torch,,9.99,1,Cuisine > Outils,")

    response = upload(manager, body)

    assert response.json()["encoding"] == "utf-8-sig"
    item = run(committed, response.json()["id"])
    assert item.rows_failed == 0  # the BOM did not become part of the first column's name
    assert product("BOM-1").name == "Crème brûlée torch"
    assert category_names(product("BOM-1").category) == ["Cuisine", "Outils"]


def test_a_latin1_file_with_accented_text(manager: APIClient, committed: Committed) -> None:
    body = (HEADER + "LAT-1,Théière émaillée,Thé à la menthe,15.00,2,Maison > Cuisine,\n").encode(
        "latin-1"
    )

    response = upload(manager, body)

    assert response.json()["encoding"] in ("cp1252", "latin-1")
    run(committed, response.json()["id"])
    teapot = product("LAT-1")
    assert (teapot.name, teapot.description) == ("Théière émaillée", "Thé à la menthe")
    assert category_names(teapot.category) == ["Maison", "Cuisine"]


def test_a_cp1252_file_keeps_its_euro_sign_and_quotes(
    manager: APIClient, committed: Committed
) -> None:
    body = (HEADER + "CP-1,“Euro” lamp,Costs 5 €,5.00,1,Misc,\n").encode("cp1252")

    response = upload(manager, body)

    assert response.json()["encoding"] == "cp1252"
    run(committed, response.json()["id"])
    assert (product("CP-1").name, product("CP-1").description) == ("“Euro” lamp", "Costs 5 €")


def test_a_declared_charset_wins_over_the_guess(manager: APIClient, committed: Committed) -> None:
    body = (HEADER + "DEC-1,Café,,1.00,1,Misc,\n").encode("latin-1")

    response = upload(manager, body, "text/csv; charset=ISO-8859-1")

    assert response.json()["encoding"] == "latin-1"
    run(committed, response.json()["id"])
    assert product("DEC-1").name == "Café"


# -- dedup, unchanged rows, caches ------------------------------------------------------


def test_uploading_the_same_file_again_answers_the_existing_import(
    manager: APIClient, committed: Committed, import_dir: Path
) -> None:
    body = csv_body("DUP-1,Once,,1.00,1,Misc,")
    first = upload(manager, body)
    assert len(list(import_dir.iterdir())) == 1  # stored, waiting for its run
    item = run(committed, first.json()["id"])

    second = upload(manager, body)

    assert second.status_code == 200
    assert second.json()["id"] == item.pk
    assert second.json()["status"] == "completed"
    assert ProductImport.objects.count() == 1
    assert list(import_dir.iterdir()) == []  # the second copy was discarded


def _row_version(sku: str) -> tuple[Any, ...]:
    product = Product.objects.get(sku=sku)
    if connection.vendor != "postgresql":
        return (product.updated_at,)
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text, ctid::text FROM catalog_product WHERE sku = %s", [sku])
        return (product.updated_at, *cursor.fetchone())


def _version(namespace: str) -> Any:
    return caches["catalog"].get(response_cache._version_key(namespace))


def test_unchanged_rows_are_not_rewritten_and_their_cache_is_kept(
    manager: APIClient, committed: Committed, api_client: APIClient
) -> None:
    first = upload(manager, csv_body("SAME-1,Same,,1.00,1,Misc,", "MOVE-1,Moves,,1.00,1,Misc,"))
    run(committed, first.json()["id"])
    same, moves = product("SAME-1"), product("MOVE-1")
    assert api_client.get(product_url(same.pk)).status_code == 200  # cached, versions exist
    assert api_client.get(product_url(moves.pk)).status_code == 200
    same_before, moves_before = _row_version("SAME-1"), _row_version("MOVE-1")
    same_version = _version(caching.product_namespace(same.pk))
    moves_version = _version(caching.product_namespace(moves.pk))
    assert same_version is not None
    assert moves_version is not None

    # The same rows written differently (spacing, price digits, key order), and one change.
    second = upload(
        manager,
        csv_body(
            'SAME-1, Same ,,1.0,1,Misc ,"{}"',
            "MOVE-1,Moves,,1.25,1,Misc,",
        ),
    )
    item = run(committed, second.json()["id"])

    assert (item.rows_updated, item.rows_unchanged, item.rows_created) == (1, 1, 0)
    assert _row_version("SAME-1") == same_before
    assert _row_version("MOVE-1") != moves_before
    assert _version(caching.product_namespace(same.pk)) == same_version
    assert _version(caching.product_namespace(moves.pk)) != moves_version
    assert api_client.get(product_url(moves.pk)).json()["price"] == "1.25"


def test_created_products_bump_the_lists_and_words_not_a_namespace_each(
    manager: APIClient, committed: Committed, api_client: APIClient
) -> None:
    run(committed, upload(manager, csv_body("OLD-1,Old lamp,,1.00,1,Misc,")).json()["id"])
    old = product("OLD-1")
    assert api_client.get("/api/products/").status_code == 200
    assert api_client.get(product_url(old.pk)).status_code == 200
    list_version = _version(caching.PRODUCT_LIST)
    words_version = _version(caching.VOCABULARY)
    old_version = _version(caching.product_namespace(old.pk))

    body = csv_body("OLD-1,Old lamp,,2.00,1,Misc,", "NEW-1,New kettle,,3.00,1,Misc,")
    item = run(committed, upload(manager, body).json()["id"])

    assert (item.rows_created, item.rows_updated) == (1, 1)
    created = product("NEW-1")
    assert _version(caching.product_namespace(created.pk)) is None
    assert _version(caching.product_namespace(old.pk)) != old_version
    assert _version(caching.PRODUCT_LIST) != list_version
    assert _version(caching.VOCABULARY) != words_version
    assert api_client.get(product_url(created.pk)).json()["name"] == "New kettle"
    assert api_client.get(product_url(old.pk)).json()["price"] == "2.00"
    listed = api_client.get("/api/products/", {"ordering": "name"}).json()
    assert [entry["name"] for entry in listed["results"]] == ["New kettle", "Old lamp"]


def test_a_file_that_changes_nothing_bumps_no_cache(
    manager: APIClient, committed: Committed, api_client: APIClient
) -> None:
    run(committed, upload(manager, csv_body("KEEP-1,Keep,,1.00,1,Misc,")).json()["id"])
    assert api_client.get("/api/products/").status_code == 200
    list_version = _version(caching.PRODUCT_LIST)
    catalog_version = _version(caching.CATALOG)

    body = ndjson_body(
        {"sku": "KEEP-1", "name": "Keep", "price": 1, "stock": 1, "category": "Misc"}
    )
    item = run(committed, upload(manager, body, "application/x-ndjson").json()["id"])

    assert item.rows_unchanged == 1
    assert _version(caching.PRODUCT_LIST) == list_version
    assert _version(caching.CATALOG) == catalog_version


def test_cached_catalog_reads_and_search_show_the_imported_data(
    manager: APIClient, committed: Committed, api_client: APIClient
) -> None:
    run(
        committed,
        upload(manager, csv_body("SRCH-1,Walnut bookshelf,,80.00,2,Furniture,")).json()["id"],
    )
    shelf = product("SRCH-1")
    assert api_client.get(product_url(shelf.pk)).json()["name"] == "Walnut bookshelf"
    listed = api_client.get("/api/products/").json()
    assert [entry["name"] for entry in listed["results"]] == ["Walnut bookshelf"]
    assert api_client.get("/api/search/", {"q": "walnut"}).json()["count"] == 1

    body = csv_body(
        "SRCH-1,Oak bookshelf,Solid oak,85.00,2,Furniture,",
        "SRCH-2,Teak armchair,,120.00,1,Furniture > Seating,",
    )
    run(committed, upload(manager, body).json()["id"])

    assert api_client.get(product_url(shelf.pk)).json()["name"] == "Oak bookshelf"
    listed = api_client.get("/api/products/", {"ordering": "name"}).json()
    assert [entry["name"] for entry in listed["results"]] == ["Oak bookshelf", "Teak armchair"]
    found = api_client.get("/api/search/", {"q": "oak"}).json()
    assert [hit["id"] for hit in found["results"]] == [shelf.pk]
    assert api_client.get("/api/search/", {"q": "walnut"}).json()["count"] == 0
    assert api_client.get("/api/search/", {"q": "teak armchair"}).json()["count"] == 1
    categories = api_client.get("/api/categories/").json()
    names = {entry["name"] for entry in categories.get("results", categories)}
    assert {"Furniture", "Seating"} <= names


# -- chunks, cancellation, progress -----------------------------------------------------


def test_chunks_continue_where_the_last_one_stopped(
    manager: APIClient, committed: Committed, settings: Any
) -> None:
    settings.CATALOG_IMPORT_CHUNK_ROWS = 3
    rows = [f"CH-{n:02},Item {n},,1.00,1,Misc," for n in range(10)]
    rows[4] = "CH-04,,,1.00,1,Misc,"  # bad row 6 of the file
    item = run(committed, upload(manager, csv_body(*rows)).json()["id"])

    assert item.chunks_done == 4
    assert (item.rows_created, item.rows_failed) == (9, 1)
    assert item.byte_offset == item.size_bytes
    assert list(ProductImportError.objects.values_list("row_number", "column")) == [(6, "name")]


def test_a_cancelled_import_stops_between_chunks_and_says_how_far_it_got(
    manager: APIClient, committed: Committed, settings: Any
) -> None:
    settings.CATALOG_IMPORT_CHUNK_ROWS = 2
    rows = [f"CAN-{n},Item {n},,1.00,1,Misc," for n in range(10)]
    import_id = upload(manager, csv_body(*rows)).json()["id"]
    seen: list[int] = []

    def cancel_after_first_chunk(item: ProductImport) -> None:
        seen.append(item.chunks_done)
        if seen == [1]:
            assert manager.post(f"{URL}{import_id}/cancel/").status_code == 200

    with committed():
        services.import_run(import_id=import_id, on_chunk=cancel_after_first_chunk)

    assert seen == [1, 1]  # the second step found the flag and applied nothing
    body = manager.get(f"{URL}{import_id}/").json()
    assert body["status"] == "cancelled"
    assert body["rows_processed"] == 2
    assert body["last_row"] == 3  # the header and two rows
    assert 0 < body["bytes_processed"] < body["size_bytes"]
    assert set(Product.objects.values_list("sku", flat=True)) == {"CAN-0", "CAN-1"}
    again = manager.post(f"{URL}{import_id}/cancel/")
    assert again.status_code == 409
    assert error_of(again)["code"] == "import_finished"
    # Cancelled, the same file may be sent again and makes a new import.
    assert upload(manager, csv_body(*rows)).status_code == 202


def test_a_chunk_read_ahead_is_dropped_when_another_runner_moved_the_import_on(
    manager: APIClient, committed: Committed, settings: Any
) -> None:
    """While chunk 2 is read ahead, a second runner applies chunk 2 itself: the first
    runner must read chunk 3 from the committed offset, not write its stale chunk 2."""
    settings.CATALOG_IMPORT_CHUNK_ROWS = 2
    rows = [f"RA-{n},Item {n},,1.00,1,Misc," for n in range(10)]
    import_id = upload(manager, csv_body(*rows)).json()["id"]
    offsets: list[int] = []

    def second_runner_after_first_chunk(item: ProductImport) -> None:
        offsets.append(item.byte_offset)
        if len(offsets) == 1:
            other, more = services.import_chunk_apply(import_id=import_id)
            assert (other.chunks_done, more) == (2, True)

    with committed():
        services.import_run(import_id=import_id, on_chunk=second_runner_after_first_chunk)

    item = ProductImport.objects.get(pk=import_id)
    assert item.status == ProductImportStatus.COMPLETED
    # Five chunks of two rows and the one that finds the end: each row read,
    # counted and written once.
    assert (item.chunks_done, item.rows_processed, item.rows_created) == (6, 10, 10)
    assert item.records_read == 11
    assert item.byte_offset == item.size_bytes
    assert offsets == sorted(offsets)  # the first runner never went back
    assert Product.objects.filter(sku__startswith="RA-").count() == 10


def test_a_read_ahead_that_fails_fails_the_import_after_the_chunks_it_applied(
    manager: APIClient, committed: Committed, settings: Any, import_dir: Path
) -> None:
    settings.CATALOG_IMPORT_CHUNK_ROWS = 2
    rows = [f"RF-{n},Item {n},,1.00,1,Misc," for n in range(10)]
    import_id = upload(manager, csv_body(*rows)).json()["id"]
    stored = import_dir / ProductImport.objects.get(pk=import_id).stored_name

    def remove_the_file_after_the_first_chunk(item: ProductImport) -> None:
        if item.chunks_done == 1:
            stored.unlink()

    with committed():
        assert (
            services.import_run(import_id=import_id, on_chunk=remove_the_file_after_the_first_chunk)
            is False
        )

    item = ProductImport.objects.get(pk=import_id)
    assert item.status == ProductImportStatus.FAILED
    assert item.failure.startswith("FileNotFoundError")
    # The chunk read ahead before the file went (an open file stays readable) may
    # have been applied too; whatever was applied is exactly what the import says.
    assert item.rows_processed in (2, 4)
    assert Product.objects.filter(sku__startswith="RF-").count() == item.rows_created
    assert item.rows_created == item.rows_processed


def test_the_read_ahead_answers_only_for_the_chunk_it_prepared(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(csv_body("RX-1,One,,1.00,1,Misc,", "RX-2,Two,,x,1,Misc,"))
    start = ChunkStart(
        path=path,
        file_format="csv",
        encoding="utf-8",
        columns=tuple(HEADER.strip().split(",")),
        offset=0,
        records_before=0,
        limit=10,
    )
    with ReadAhead() as read_ahead:
        assert read_ahead.take(start) is None  # nothing prepared
        read_ahead.start(start)
        assert read_ahead.take(replace(start, offset=1)) is None  # another start: dropped
        assert read_ahead.take(start) is None  # and not kept
        read_ahead.start(start)
        chunk = read_ahead.take(start)
        assert chunk is not None
        assert json.loads(chunk.encoded.text)[0]["sku"] == "RX-1"
        assert chunk.encoded.rows == 1
        assert (chunk.failed_rows, chunk.errors[0].column) == (1, "price")
        assert chunk.batch.at_end
        assert chunk.batch.records_read == 3
        read_ahead.start(replace(start, path=tmp_path / "missing.csv"))
        with pytest.raises(FileNotFoundError):
            read_ahead.take(replace(start, path=tmp_path / "missing.csv"))


def test_another_users_view_of_a_missing_import_is_a_404(manager: APIClient) -> None:
    assert manager.get(f"{URL}999999/").status_code == 404
    assert manager.get(f"{URL}999999/errors.csv").status_code == 404
    assert manager.post(f"{URL}999999/cancel/").status_code == 404


def test_progress_is_pushed_to_the_dashboard_stream(
    manager: APIClient, committed: Committed, redis_url: str
) -> None:
    subscriber = redis.Redis.from_url(redis_url).pubsub()
    subscriber.subscribe(channel_for(redis_url, groups.DASHBOARD))
    assert subscriber.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
    import_id = upload(manager, csv_body("PUSH-1,Pushed,,1.00,1,Misc,")).json()["id"]

    run(committed, import_id)
    assert PUBLISHER.flush()

    events = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = subscriber.get_message(timeout=0.5)
        if message and message["type"] == "message":
            event = json.loads(message["data"])
            if event.get("type") == "catalog.import" and event["import"]["id"] == import_id:
                events.append(event["import"])
                if event["import"]["status"] == "completed":
                    break
    subscriber.close()
    assert events[-1]["status"] == "completed"
    assert events[-1]["rows_created"] == 1


# -- the management command ---------------------------------------------------------------


def test_the_command_imports_a_file_with_the_same_rules(tmp_path: Path) -> None:
    path = tmp_path / "catalog.ndjson"
    path.write_bytes(
        ndjson_body(
            {"sku": "CMD-1", "name": "Spade", "price": "9.00", "category": "Garden > Tools"},
            {"sku": "CMD-2", "name": "Rake", "price": "-1", "category": "Garden > Tools"},
        )
    )
    out = io.StringIO()

    call_command("import_products", str(path), "--no-progress", stdout=out)

    assert "1 created" in out.getvalue()
    assert "1 failed" in out.getvalue()
    assert product("CMD-1").price == Decimal("9.00")
    item = ProductImport.objects.get()
    assert item.created_by is None
    assert list(item.errors.values_list("row_number", "column", "message")) == [
        (2, "price", "must not be negative")
    ]
    again = io.StringIO()
    call_command("import_products", str(path), "--no-progress", stdout=again)
    assert f"imported before: import {item.pk}" in again.getvalue()
    assert ProductImport.objects.count() == 1


def test_an_import_that_stopped_moving_is_found_for_a_new_run(manager: APIClient) -> None:
    stalled_id = upload(manager, csv_body("ST-1,Stalled,,1.00,1,Misc,")).json()["id"]
    fresh_id = upload(manager, csv_body("ST-2,Fresh,,1.00,1,Misc,")).json()["id"]
    done_id = upload(manager, csv_body("ST-3,Done,,1.00,1,Misc,")).json()["id"]
    long_ago = timezone.now() - timedelta(minutes=10)
    ProductImport.objects.filter(pk__in=[stalled_id, done_id]).update(updated_at=long_ago)
    ProductImport.objects.filter(pk=done_id).update(status=ProductImportStatus.COMPLETED)

    assert services.imports_stalled(quiet_seconds=300) == [stalled_id]
    assert fresh_id not in services.imports_stalled(quiet_seconds=300)


def test_partial_uploads_are_removed_once_a_day_old(import_dir: Path) -> None:
    import_dir.mkdir(parents=True)
    old, recent = import_dir / "upload-old.part", import_dir / "upload-new.part"
    old.write_bytes(b"sku,na")
    recent.write_bytes(b"sku,na")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))

    assert services.uploads_abandoned_remove(older_than_seconds=24 * 3600) == 1
    assert sorted(path.name for path in import_dir.iterdir()) == ["upload-new.part"]


def test_with_tasks_in_process_the_upload_is_applied_once_it_commits(
    manager: APIClient, committed: Committed, settings: Any
) -> None:
    """The embedded profile: no broker, the task runs in the process after the commit."""
    from config.celery import app

    # The app's value is read before the setting changes: Celery reads its
    # configuration from Django's settings lazily, so read after, it would be
    # True, and "restoring" it would leave every later test's tasks in process.
    eager_before = app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    try:
        with committed():
            response = upload(manager, csv_body("EAGER-1,In process,,4.00,1,Misc,"))
    finally:
        app.conf.task_always_eager = eager_before

    assert response.status_code == 202
    assert ProductImport.objects.get(pk=response.json()["id"]).status == "completed"
    assert product("EAGER-1").price == Decimal("4.00")


@pytest.mark.django_db
def test_the_upsert_writes_every_value_exactly_whatever_it_must_escape() -> None:
    category = CategoryFactory(name="Escapes")
    attributes = {"note": 'a "quoted" \\ back\nslash', "size": [1, 2.5], "ünï": "☕"}
    row = UpsertRow(
        sku='ESC-"1"\\',
        name='Lamp "Bright" \\ 50%',
        description="Line one\nline two\ttab — ☕",
        price=Decimal("9999999999.99"),
        stock_quantity=2_147_483_647,
        category_id=category.pk,
        attributes_json=json.dumps(attributes, sort_keys=True, separators=(",", ":")),
    )

    written = products_upsert(rows=[row], now=timezone.now())

    assert [entry.created for entry in written] == [True]
    stored = Product.objects.get(pk=written[0].product_id)
    assert (stored.sku, stored.name, stored.description) == (row.sku, row.name, row.description)
    assert (stored.price, stored.stock_quantity) == (row.price, row.stock_quantity)
    assert stored.attributes == attributes
    assert products_upsert(rows=[row], now=timezone.now()) == []  # read back equal: unchanged
