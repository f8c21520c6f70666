"""Search answers from the catalog's response cache: exact after every write, on both engines.

The writes go through the services, whose cache bumps run after commit
(``committed`` runs the on-commit hooks as a real commit would). The
stampede tests need PostgreSQL and Redis, as the catalog's do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pytest_django import DjangoAssertNumQueries
from rest_framework.test import APIClient

from conftest import require_service
from emporium.accounts.models import User
from emporium.catalog import services as catalog_services
from emporium.catalog.models import Product
from emporium.catalog.selectors import category_list
from emporium.core import cache as response_cache
from emporium.core.tests.factories import (
    CategoryFactory,
    ProductFactory,
    UserFactory,
    client_for,
)
from emporium.orders.tests.support import ORDERS_URL, cart_fill
from emporium.search import api as search_api
from emporium.search import caching as search_caching
from tests.support.concurrency import run_concurrently

pytestmark = pytest.mark.django_db

URL = "/api/search/"
SUGGEST_URL = "/api/search/suggest/"
PAGE_URL = "/search/"

Committed = Callable[[], AbstractContextManager[Any]]


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Committed:
    @contextmanager
    def block() -> Iterator[None]:
        with django_capture_on_commit_callbacks(execute=True):
            yield

    return block


def hits(client: Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def test_a_repeated_search_is_answered_from_the_cache(
    api_client: APIClient, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    ProductFactory(name="Walnut desk", description="")
    first = api_client.get(URL, {"q": "walnut"})
    # Another spelling of the same search (whitespace, an unread parameter) shares it.
    with django_assert_num_queries(0):
        again = api_client.get(URL, {"q": "  walnut ", "utm_source": "mail"})
    assert again.status_code == 200
    assert again.content == first.content
    assert again["ETag"] == first["ETag"]
    assert again["Cache-Control"].startswith("public, max-age=")


def test_a_matching_etag_is_304_without_a_query(
    api_client: APIClient, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    ProductFactory(name="Walnut desk", description="")
    etag = api_client.get(URL, {"q": "walnut"})["ETag"]
    with django_assert_num_queries(0):
        response = api_client.get(URL, {"q": "walnut"}, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304
    assert response.content == b""


def test_a_price_change_shows_in_the_next_search(
    api_client: APIClient, committed: Committed
) -> None:
    product = ProductFactory(name="Walnut desk", description="", price=Decimal("100.00"))
    assert hits(api_client, q="walnut")[0]["price"] == "100.00"
    assert [hit["id"] for hit in hits(api_client, q="walnut", max_price="150")] == [product.pk]
    with committed():
        catalog_services.product_update(product=product, price=Decimal("180.00"))
    assert hits(api_client, q="walnut")[0]["price"] == "180.00"
    assert hits(api_client, q="walnut", max_price="150") == []


def test_the_in_stock_filter_right_after_a_checkout_takes_the_last_unit(
    api_client: APIClient, committed: Committed
) -> None:
    last = ProductFactory(name="Walnut desk", description="", stock_quantity=1)
    other = ProductFactory(name="Walnut shelf", description="", stock_quantity=5)
    in_stock = {"q": "walnut", "in_stock": "true"}
    assert {hit["id"] for hit in hits(api_client, **in_stock)} == {last.pk, other.pk}
    customer: User = UserFactory()
    cart_fill(customer, [(last, 1)])
    with committed():
        assert client_for(customer).post(ORDERS_URL).status_code == 201
    assert [hit["id"] for hit in hits(api_client, **in_stock)] == [other.pk]
    [sold_out] = [hit for hit in hits(api_client, q="walnut") if hit["id"] == last.pk]
    assert sold_out["in_stock"] is False


def test_a_category_rename_shows_in_results_the_page_and_suggestions(
    api_client: APIClient, committed: Committed
) -> None:
    category = CategoryFactory(name="Furniture")
    ProductFactory(name="Walnut desk", description="", category=category)
    assert hits(api_client, q="walnut")[0]["category_name"] == "Furniture"
    assert b"Furniture" in api_client.get(PAGE_URL, {"q": "walnut"}).content
    assert api_client.get(SUGGEST_URL, {"q": "furn"}).json()["categories"]
    with committed():
        catalog_services.category_update(category=category, name="Tables")
    assert hits(api_client, q="walnut")[0]["category_name"] == "Tables"
    assert b"Furniture" not in api_client.get(PAGE_URL, {"q": "walnut"}).content
    assert api_client.get(SUGGEST_URL, {"q": "furn"}).json()["categories"] == []


def test_the_pages_category_options_are_read_once_and_follow_category_changes(
    api_client: APIClient, committed: Committed
) -> None:
    furniture = CategoryFactory(name="Furniture")
    ProductFactory(name="Walnut desk", description="", category=furniture)
    ProductFactory(name="Oak desk", description="", category=furniture)
    assert b">Furniture</option>" in api_client.get(PAGE_URL, {"q": "walnut"}).content
    # Another page, rendered afresh, takes the options from the cache.
    with CaptureQueriesContext(connection) as queries:
        page = api_client.get(PAGE_URL, {"q": "oak", "category": str(furniture.pk)}).content
    listing = str(category_list().values_list("pk", "depth", "name").query)
    assert not [query for query in queries if query["sql"] == listing]
    assert f'<option value="{furniture.pk}" selected>Furniture</option>'.encode() in page
    with committed():
        catalog_services.category_create(name="Garden")
    assert b">Garden</option>" in api_client.get(PAGE_URL, {"q": "desk"}).content


def completions(client: Client, prefix: str) -> list[str]:
    response = client.get(SUGGEST_URL, {"q": prefix})
    assert response.status_code == 200, response.content
    found: list[str] = response.json()["completions"]
    return found


def test_products_created_renamed_and_deleted_show_in_the_next_suggestions_without_a_lag(
    api_client: APIClient, committed: Committed, settings: Any
) -> None:
    settings.CATALOG_CACHE_VOCABULARY_LAG_SECONDS = 0
    desk = ProductFactory(name="Walnut desk", description="")
    assert completions(api_client, "wal") == ["walnut"]
    with committed():
        catalog_services.product_create(
            name="Wallpaper roll", sku="WP-1", price=Decimal("9.00"), category=desk.category
        )
    assert completions(api_client, "wal") == ["wallpaper", "walnut"]
    with committed():
        catalog_services.product_update(product=desk, name="Oak desk")
    assert completions(api_client, "wal") == ["wallpaper"]
    assert completions(api_client, "oa") == ["oak"]
    wallpaper = Product.objects.get(sku="WP-1")
    with committed():
        catalog_services.product_delete(product=wallpaper)
    assert completions(api_client, "wal") == []


def test_a_new_product_name_reaches_each_cached_suggestion_within_the_lag(
    api_client: APIClient, committed: Committed, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lag = settings.CATALOG_CACHE_VOCABULARY_LAG_SECONDS = 10.0
    offset = [0.0]
    real_now = response_cache._now
    monkeypatch.setattr(response_cache, "_now", lambda: real_now() + offset[0])
    desk = ProductFactory(name="Walnut desk", description="")
    prefixes = ["w", "wa", "wal"]
    assert [completions(api_client, prefix) for prefix in prefixes] == [["walnut"]] * 3
    with committed():
        catalog_services.product_create(
            name="Wallpaper roll", sku="WP-1", price=Decimal("9.00"), category=desk.category
        )
    # Right after: every prefix still answers from its cached entry.
    assert [completions(api_client, prefix) for prefix in prefixes] == [["walnut"]] * 3
    # Each answers anew from its own moment in the window on.
    moments = {
        prefix: response_cache._lag_fraction(
            response_cache._digest(search_caching.suggest_key(prefix))
        )
        * lag
        for prefix in prefixes
    }
    for prefix in sorted(prefixes, key=moments.__getitem__):
        offset[0] = moments[prefix] + 0.01
        assert completions(api_client, prefix) == ["wallpaper", "walnut"], prefix
    offset[0] = lag
    assert [completions(api_client, prefix) for prefix in prefixes] == [["wallpaper", "walnut"]] * 3


def test_checkouts_price_and_review_changes_leave_the_suggestions_cached(
    api_client: APIClient,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """They change stock, prices and ratings, never a product-name word."""
    desk = ProductFactory(name="Walnut desk", description="", stock_quantity=5)
    first = api_client.get(SUGGEST_URL, {"q": "wal"})
    results = api_client.get(URL, {"q": "walnut"})
    customer: User = UserFactory()
    cart_fill(customer, [(desk, 2)])
    with committed():
        assert client_for(customer).post(ORDERS_URL).status_code == 201
    with committed():
        catalog_services.product_update(product=desk, price=Decimal("80.00"))
    with django_assert_num_queries(0):
        again = api_client.get(SUGGEST_URL, {"q": "wal"})
    assert again.content == first.content
    # The search results show the stock and the price: those are computed afresh.
    fresh = api_client.get(URL, {"q": "walnut"})
    assert fresh.content != results.content
    assert fresh.json()["results"][0]["price"] == "80.00"


def test_the_page_is_cached_and_revalidated(
    api_client: APIClient, committed: Committed, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    product = ProductFactory(name="Walnut desk", description="", price=Decimal("100.00"))
    first = api_client.get(PAGE_URL, {"q": "walnut"})
    assert first.status_code == 200
    with django_assert_num_queries(0):
        assert api_client.get(PAGE_URL, {"q": "walnut"}).content == first.content
        revalidated = api_client.get(PAGE_URL, {"q": "walnut"}, HTTP_IF_NONE_MATCH=first["ETag"])
    assert revalidated.status_code == 304
    with committed():
        catalog_services.product_update(product=product, price=Decimal("120.00"))
    changed = api_client.get(PAGE_URL, {"q": "walnut"}, HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200
    assert b"120.00" in changed.content


def test_errors_are_not_cached(api_client: APIClient, committed: Committed) -> None:
    assert api_client.get(URL, {"q": "walnut", "category": 999_999}).status_code == 400
    assert api_client.get(PAGE_URL, {"q": "walnut", "page": 10_000}).status_code == 400
    with committed():
        category = catalog_services.category_create(name="Furniture")
    ProductFactory(name="Walnut desk", description="", category=category)
    response = api_client.get(URL, {"q": "walnut", "category": category.pk})
    assert response.status_code == 200


# --- stampede (PostgreSQL and Redis) ---------------------------------------------------------


@pytest.fixture
def slow_searches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts searches computed by the API, each taking a while."""
    calls: list[int] = []
    lock = threading.Lock()
    real = search_api.product_search

    def counting(**kwargs: Any) -> Any:
        with lock:
            calls.append(1)
        time.sleep(0.2)  # keeps the others arriving while this one computes
        return real(**kwargs)

    monkeypatch.setattr(search_api, "product_search", counting)
    return calls


@pytest.mark.django_db(transaction=True)
def test_many_searches_right_after_a_write_cause_one_recomputation(
    slow_searches: list[int],
) -> None:
    require_service("DATABASE_URL")
    require_service("REDIS_URL")
    product = ProductFactory(name="Walnut desk", description="", price=Decimal("100.00"))
    Client().get(URL, {"q": "walnut"})
    catalog_services.product_update(product=product, price=Decimal("19.00"))  # commits, bumps

    def read(_: int) -> tuple[int, bytes]:
        response = Client().get(URL, {"q": "walnut"})
        return response.status_code, response.content

    results = run_concurrently(read, list(range(12)), workers=12)

    assert len(slow_searches) == 2  # the warm-up and exactly one after the write
    assert {status for status, _ in results} == {200}
    assert len({body for _, body in results}) == 1
    assert b'"19.00"' in results[0][1]
