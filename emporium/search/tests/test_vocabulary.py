"""The search vocabulary's statement triggers: exact counts on every write path, under races.

Every write path of catalog_product (single saves, multi-row inserts, bulk
updates, deletes, the catalog import's upsert) must leave search_vocabulary
exactly as a recount from scratch (search_vocabulary_rebuild) would; two
transactions writing products with shared words at once must neither
deadlock nor lose a count.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Concat

from emporium.catalog import services as catalog_services
from emporium.catalog.imports.upsert import UpsertRow, products_upsert
from emporium.catalog.models import Product
from emporium.core.tests.factories import CategoryFactory, ProductFactory
from emporium.search.tests.support import require_postgresql
from tests.support.concurrency import run_concurrently

Vocabulary = dict[str, tuple[str | None, int]]


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    require_postgresql()


def stored() -> Vocabulary:
    with connection.cursor() as cursor:
        cursor.execute("SELECT word, lexeme, documents FROM search_vocabulary")
        return {word: (lexeme, documents) for word, lexeme, documents in cursor.fetchall()}


def recounted() -> Vocabulary:
    """The vocabulary counted afresh from the products, in a savepoint rolled back after."""
    with transaction.atomic():
        point = transaction.savepoint()
        with connection.cursor() as cursor:
            cursor.execute("SELECT search_vocabulary_rebuild()")
        counted = stored()
        transaction.savepoint_rollback(point)
    return counted


def assert_exact(step: str) -> None:
    assert stored() == recounted(), step


def _upsert_row(sku: str, name: str, category_id: int) -> UpsertRow:
    return UpsertRow(
        sku=sku,
        name=name,
        description="",
        price=Decimal("1.00"),
        stock_quantity=1,
        category_id=category_id,
        attributes_json="{}",
    )


@pytest.mark.django_db
def test_the_vocabulary_equals_a_recount_after_every_kind_of_write() -> None:
    category = CategoryFactory(name="Hall")
    table = ProductFactory(name="Oak table", category=category)
    ProductFactory(name="The oak, the OAK and the ash", category=category)
    assert stored()["oak"][1] == 2
    assert_exact("single inserts, a repeated word and stop words")

    Product.objects.bulk_create(
        ProductFactory.build(name=name, sku=f"BULK-{n}", category=category)
        for n, name in enumerate(["Zinc lamp", "Ash lamp", "", "Lamp, lamp, lamp!", "Oak lamp"])
    )
    assert stored()["lamp"][1] == 4
    assert_exact("one multi-row insert")

    catalog_services.product_update(product=table, name="Pine table")
    assert_exact("a rename through the service")
    table.save()
    assert_exact("a save that keeps the name")

    lamps = Product.objects.filter(sku__startswith="BULK-")
    lamps.update(stock_quantity=F("stock_quantity") + 1)
    assert_exact("a bulk update of another column")
    lamps.update(name=Concat(Value("Brass "), F("name")))
    assert_exact("a bulk rename")
    # Names swapped among products: every word keeps its count.
    before = stored()
    lamps.update(
        name=Case(
            When(sku="BULK-0", then=Value("Ash lamp")),
            When(sku="BULK-1", then=Value("Zinc lamp")),
            default=F("name"),
        )
    )
    assert stored()["zinc"] == before["zinc"]
    assert_exact("names swapped in one statement")

    imported = [
        _upsert_row("BULK-0", "Ash lamp", category.pk),  # the same name, other columns change
        _upsert_row("BULK-1", "Copper kettle", category.pk),  # renamed by the upsert
        _upsert_row("IMP-1", "Copper lamp", category.pk),
        _upsert_row("IMP-2", "Copper teapot", category.pk),
    ]
    assert len(products_upsert(rows=imported, now=datetime.now(UTC))) == 4
    assert stored()["copper"][1] == 3
    assert_exact("the import's upsert: inserts and updates in one statement")
    assert products_upsert(rows=imported, now=datetime.now(UTC)) == []
    assert_exact("the same rows imported again: nothing written")

    Product.objects.get(sku="BULK-2").delete()
    assert_exact("a single delete")
    Product.objects.filter(name__icontains="lamp").delete()
    assert "lamp" not in stored()
    assert_exact("a bulk delete that takes a word's last product")

    with connection.cursor() as cursor:
        cursor.execute("UPDATE catalog_product SET name = 'Walnut stool' WHERE sku = 'IMP-2'")
        cursor.execute("UPDATE catalog_product SET name = 'Copper teapot' WHERE sku = 'IMP-2'")
    assert_exact("a word gone and back within one transaction")


@pytest.mark.django_db
def test_a_random_sequence_of_writes_keeps_the_vocabulary_exact() -> None:
    generator = random.Random(38)
    words = ["oak", "ash", "pine", "lamp", "chair", "table", "the", "of", "Oak", "chairs"]
    category = CategoryFactory(name="Random")

    def name() -> str:
        return " ".join(generator.choices(words, k=generator.randint(0, 4)))

    serial = 0
    for step in range(40):
        products = list(Product.objects.order_by("pk"))
        choice = generator.randrange(5)
        if choice == 0 or not products:
            batch = []
            for _ in range(generator.randint(1, 6)):
                serial += 1
                batch.append(
                    ProductFactory.build(name=name(), sku=f"R-{serial}", category=category)
                )
            Product.objects.bulk_create(batch)
        elif choice == 1:
            product = generator.choice(products)
            product.name = name()
            product.save()
        elif choice == 2:
            chosen = generator.sample(products, k=min(len(products), 3))
            Product.objects.filter(pk__in=[p.pk for p in chosen]).update(
                name=Case(*(When(pk=p.pk, then=Value(name())) for p in chosen))
            )
        elif choice == 3:
            chosen = generator.sample(products, k=min(len(products), 2))
            Product.objects.filter(pk__in=[p.pk for p in chosen]).delete()
        else:
            rows = [_upsert_row(p.sku, name(), category.pk) for p in generator.sample(products, 1)]
            serial += 1
            rows.append(_upsert_row(f"R-{serial}", name(), category.pk))
            products_upsert(rows=rows, now=datetime.now(UTC))
        assert_exact(f"step {step}, kind {choice}")


@pytest.mark.django_db(transaction=True)
def test_two_writers_racing_on_shared_words_neither_deadlock_nor_lose_counts() -> None:
    """Each round both writers insert, in one statement, two products whose words they
    meet in opposite orders, rename the other one's products and delete some: counting
    word by word in row order would lock "alpha" and "zulu" in opposite orders."""
    category = CategoryFactory(name="Race")
    rounds = 30
    orders = {0: ["Zulu lamp", "Alpha lamp"], 1: ["Alpha lamp", "Zulu lamp"]}
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def writer(side: int) -> int:
        written = 0
        for number in range(rounds):
            start.wait(timeout=30)
            try:
                with transaction.atomic():
                    Product.objects.bulk_create(
                        ProductFactory.build(
                            name=name, sku=f"RACE-{side}-{number}-{n}", category=category
                        )
                        for n, name in enumerate(orders[side])
                    )
                    # The other writer's rows of the last round, renamed in one statement.
                    other = Product.objects.filter(sku__startswith=f"RACE-{1 - side}-{number - 1}-")
                    other.update(name=Concat(F("name"), Value(f" mark{side}")))
                    if number % 3 == 2:
                        Product.objects.filter(
                            sku__startswith=f"RACE-{side}-{number - 2}-"
                        ).delete()
                written += 1
            except Exception as error:
                failures.append(error)
        return written

    assert run_concurrently(writer, [0, 1], workers=2) == [rounds, rounds]
    assert failures == []
    names = list(Product.objects.values_list("name", flat=True))
    assert stored()["alpha"][1] == sum("Alpha" in name for name in names)
    assert stored()["lamp"][1] == len(names)
    assert_exact("after the race")
