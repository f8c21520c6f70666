"""Cached catalog reads: every kind of write makes the next read fresh, and nothing else.

Writes run inside ``committed()``, which fires their on-commit hooks as a real
commit would (the test's own transaction never commits). An entry that must
have survived a write is read under ``django_assert_num_queries(0)``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib import admin
from django.core.cache import caches
from django.db import transaction
from django.test import Client, RequestFactory, override_settings
from pytest_django import DjangoAssertNumQueries
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from config.settings.env import cache_config
from conftest import require_service
from emporium.accounts.models import User
from emporium.catalog import selectors, services
from emporium.catalog.models import Category, Product
from emporium.catalog.tests.support import (
    CATEGORY_LIST_URL,
    PRODUCT_LIST_URL,
    category_url,
    error_of,
    product_body,
    product_url,
    result_ids,
)
from emporium.core import cache as response_cache
from emporium.core.tests.factories import (
    ProductFactory,
    StaffFactory,
    UserFactory,
    client_for,
    make_review,
)
from emporium.orders import services as order_services
from emporium.orders.models import Order, OrderStatus
from emporium.orders.tests.support import ORDERS_URL, cart_fill, order_url
from emporium.reviews import services as review_services
from tests.support.concurrency import run_concurrently
from tests.support.processes import TcpProxy

pytestmark = pytest.mark.django_db

Committed = Callable[[], AbstractContextManager[Any]]


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Committed:
    """A block whose on-commit hooks run when it ends, as after a real commit."""

    @contextmanager
    def block() -> Iterator[None]:
        with django_capture_on_commit_callbacks(execute=True):
            yield

    return block


class Shop:
    """Electronics > Audio, and Home; a lamp and a kettle at home, a speaker in audio."""

    def __init__(self) -> None:
        self.electronics = services.category_create(name="Electronics")
        self.audio = services.category_create(name="Audio", parent=self.electronics)
        self.home = services.category_create(name="Home")
        self.lamp = ProductFactory(
            name="Desk Lamp", category=self.home, price=Decimal("20.00"), stock_quantity=5
        )
        self.kettle = ProductFactory(
            name="Kettle", category=self.home, price=Decimal("35.00"), stock_quantity=4
        )
        self.speaker = ProductFactory(
            name="Speaker", category=self.audio, price=Decimal("99.00"), stock_quantity=3
        )


@pytest.fixture
def shop() -> Shop:
    return Shop()


@pytest.fixture
def staff_client() -> APIClient:
    return client_for(StaffFactory())


@pytest.fixture
def customer() -> User:
    return UserFactory()


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts JSON renderings: one per response body built from the database."""
    calls: list[int] = []
    real_render = JSONRenderer.render

    def counting(self: JSONRenderer, *args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real_render(self, *args, **kwargs)

    monkeypatch.setattr(JSONRenderer, "render", counting)
    return calls


def _row(response: Any, product: Product) -> dict[str, Any]:
    rows = [row for row in response.json()["results"] if row["id"] == product.pk]
    assert len(rows) == 1, f"product {product.pk} is not listed once"
    return rows[0]


def _warm(client: APIClient, *urls: str) -> dict[str, bytes]:
    bodies = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        bodies[url] = response.content
    return bodies


def _assert_served_from_cache(
    client: APIClient,
    queries: DjangoAssertNumQueries,
    url: str,
    body: bytes,
) -> None:
    with queries(0):
        response = client.get(url)
    assert response.status_code == 200
    assert response.content == body


# --- product writes -----------------------------------------------------------------------


def test_a_product_update_is_shown_at_once_and_other_products_stay_cached(
    api_client: APIClient,
    staff_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    kettle_url = product_url(shop.kettle.pk)
    cached = _warm(api_client, product_url(shop.lamp.pk), PRODUCT_LIST_URL, kettle_url)
    _warm(api_client, CATEGORY_LIST_URL)

    with committed():
        response = staff_client.patch(
            product_url(shop.lamp.pk), {"name": "Reading Lamp", "price": "24.50"}, format="json"
        )
    assert response.status_code == 200

    detail = api_client.get(product_url(shop.lamp.pk))
    assert (detail.json()["name"], detail.json()["price"]) == ("Reading Lamp", "24.50")
    assert detail.json() == product_body(shop.lamp)
    listed = _row(api_client.get(PRODUCT_LIST_URL), shop.lamp)
    assert (listed["name"], listed["price"]) == ("Reading Lamp", "24.50")
    _assert_served_from_cache(api_client, django_assert_num_queries, kettle_url, cached[kettle_url])
    with django_assert_num_queries(0):
        assert api_client.get(CATEGORY_LIST_URL).status_code == 200


def test_a_new_product_is_listed_at_once(
    api_client: APIClient,
    staff_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    kettle_url = product_url(shop.kettle.pk)
    cached = _warm(api_client, PRODUCT_LIST_URL, kettle_url)
    payload = {
        "sku": "FAN-1",
        "name": "Fan",
        "price": "15.00",
        "stock_quantity": 2,
        "category": shop.home.pk,
    }

    with committed():
        created = staff_client.post(PRODUCT_LIST_URL, payload, format="json")

    assert created.status_code == 201
    assert result_ids(api_client.get(PRODUCT_LIST_URL))[0] == created.json()["id"]
    _assert_served_from_cache(api_client, django_assert_num_queries, kettle_url, cached[kettle_url])


def test_a_deleted_product_is_gone_at_once(
    api_client: APIClient,
    staff_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    kettle_url = product_url(shop.kettle.pk)
    cached = _warm(api_client, PRODUCT_LIST_URL, product_url(shop.lamp.pk), kettle_url)

    with committed():
        assert staff_client.delete(product_url(shop.lamp.pk)).status_code == 204

    assert api_client.get(product_url(shop.lamp.pk)).status_code == 404
    assert shop.lamp.pk not in result_ids(api_client.get(PRODUCT_LIST_URL))
    _assert_served_from_cache(api_client, django_assert_num_queries, kettle_url, cached[kettle_url])


def test_moving_a_product_to_another_category_shows_the_new_category(
    api_client: APIClient,
    staff_client: APIClient,
    shop: Shop,
    committed: Committed,
) -> None:
    audio_list = f"{PRODUCT_LIST_URL}?category={shop.audio.pk}"
    _warm(api_client, product_url(shop.lamp.pk), audio_list)

    with committed():
        staff_client.patch(product_url(shop.lamp.pk), {"category": shop.audio.pk}, format="json")

    detail = api_client.get(product_url(shop.lamp.pk)).json()
    assert (detail["category"], detail["category_name"]) == (shop.audio.pk, "Audio")
    assert shop.lamp.pk in result_ids(api_client.get(audio_list))


def test_a_rolled_back_product_write_invalidates_nothing(
    api_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    lamp_url = product_url(shop.lamp.pk)
    cached = _warm(api_client, lamp_url)

    def write_then_fail() -> None:
        with transaction.atomic():
            services.product_update(product=shop.lamp, price=Decimal("1.00"))
            raise RuntimeError("the request failed after the write")

    with committed(), pytest.raises(RuntimeError):
        write_then_fail()

    _assert_served_from_cache(api_client, django_assert_num_queries, lamp_url, cached[lamp_url])
    assert api_client.get(lamp_url).json()["price"] == "20.00"


def test_an_update_that_changes_nothing_keeps_the_cache(
    api_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    lamp_url = product_url(shop.lamp.pk)
    cached = _warm(api_client, lamp_url)

    with committed():
        services.product_update(product=shop.lamp, price=Decimal("20.00"), name="Desk Lamp")

    _assert_served_from_cache(api_client, django_assert_num_queries, lamp_url, cached[lamp_url])


@pytest.mark.django_db(transaction=True)
def test_a_really_committed_update_is_shown_by_the_next_read(
    api_client: APIClient, staff_client: APIClient
) -> None:
    shop = Shop()
    _warm(api_client, product_url(shop.lamp.pk), PRODUCT_LIST_URL)

    staff_client.patch(product_url(shop.lamp.pk), {"stock_quantity": 0}, format="json")

    detail = api_client.get(product_url(shop.lamp.pk)).json()
    assert (detail["stock_quantity"], detail["in_stock"]) == (0, False)
    assert _row(api_client.get(PRODUCT_LIST_URL), shop.lamp)["stock_quantity"] == 0


# --- stock ----------------------------------------------------------------------------------


def test_checkout_shows_the_stock_left_at_once(
    api_client: APIClient,
    customer: User,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    speaker_url = product_url(shop.speaker.pk)
    in_stock_list = f"{PRODUCT_LIST_URL}?in_stock=true"
    cached = _warm(
        api_client, product_url(shop.lamp.pk), product_url(shop.kettle.pk), in_stock_list
    )
    cached |= _warm(api_client, speaker_url)
    cart_fill(customer, [(shop.lamp, 5), (shop.kettle, 1)])

    with committed():
        assert client_for(customer).post(ORDERS_URL).status_code == 201

    lamp = api_client.get(product_url(shop.lamp.pk)).json()
    kettle = api_client.get(product_url(shop.kettle.pk)).json()
    assert (lamp["stock_quantity"], lamp["in_stock"]) == (0, False)
    assert kettle["stock_quantity"] == 3
    assert shop.lamp.pk not in result_ids(api_client.get(in_stock_list))
    _assert_served_from_cache(
        api_client, django_assert_num_queries, speaker_url, cached[speaker_url]
    )


def test_a_checkout_refused_for_lack_of_stock_invalidates_nothing(
    api_client: APIClient,
    customer: User,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    lamp_url, speaker_url = product_url(shop.lamp.pk), product_url(shop.speaker.pk)
    cached = _warm(api_client, lamp_url, speaker_url)
    cart_fill(customer, [(shop.lamp, 1), (shop.speaker, 4)])  # only 3 speakers

    with committed():
        assert client_for(customer).post(ORDERS_URL).status_code == 409

    _assert_served_from_cache(api_client, django_assert_num_queries, lamp_url, cached[lamp_url])
    _assert_served_from_cache(
        api_client, django_assert_num_queries, speaker_url, cached[speaker_url]
    )


def _placed_order(customer: User, lines: list[tuple[Product, int]], committed: Committed) -> Order:
    cart_fill(customer, lines)
    with committed():
        return order_services.order_place(user_id=customer.pk)


def test_cancelling_an_order_shows_the_released_stock_at_once(
    api_client: APIClient,
    customer: User,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    order = _placed_order(customer, [(shop.lamp, 2)], committed)
    speaker_url = product_url(shop.speaker.pk)
    cached = _warm(api_client, product_url(shop.lamp.pk), PRODUCT_LIST_URL, speaker_url)
    assert api_client.get(product_url(shop.lamp.pk)).json()["stock_quantity"] == 3

    with committed():
        cancelled = client_for(customer).post(order_url(order.pk, "cancel"), {}, format="json")

    assert cancelled.status_code == 200
    assert api_client.get(product_url(shop.lamp.pk)).json()["stock_quantity"] == 5
    assert _row(api_client.get(PRODUCT_LIST_URL), shop.lamp)["stock_quantity"] == 5
    _assert_served_from_cache(
        api_client, django_assert_num_queries, speaker_url, cached[speaker_url]
    )


def test_a_failed_payment_shows_the_released_stock_at_once(
    api_client: APIClient,
    customer: User,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    order = _placed_order(customer, [(shop.kettle, 4)], committed)
    lamp_url = product_url(shop.lamp.pk)
    cached = _warm(api_client, product_url(shop.kettle.pk), lamp_url)
    assert api_client.get(product_url(shop.kettle.pk)).json()["in_stock"] is False

    with committed():
        order_services.order_transition(
            order_id=order.pk, to_status=OrderStatus.PAYMENT_FAILED, reason="card declined"
        )

    kettle = api_client.get(product_url(shop.kettle.pk)).json()
    assert (kettle["stock_quantity"], kettle["in_stock"]) == (4, True)
    _assert_served_from_cache(api_client, django_assert_num_queries, lamp_url, cached[lamp_url])


# --- category writes ----------------------------------------------------------------------


def test_renaming_a_category_shows_the_new_name_on_its_products_only(
    api_client: APIClient,
    staff_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    speaker_url = product_url(shop.speaker.pk)
    cached = _warm(
        api_client,
        product_url(shop.lamp.pk),
        speaker_url,
        PRODUCT_LIST_URL,
        CATEGORY_LIST_URL,
        category_url(shop.home.pk),
    )

    with committed():
        renamed = staff_client.patch(category_url(shop.home.pk), {"name": "House"}, format="json")

    assert renamed.status_code == 200
    assert api_client.get(product_url(shop.lamp.pk)).json()["category_name"] == "House"
    assert _row(api_client.get(PRODUCT_LIST_URL), shop.kettle)["category_name"] == "House"
    assert api_client.get(category_url(shop.home.pk)).json()["name"] == "House"
    listed = api_client.get(CATEGORY_LIST_URL).json()["results"]
    assert {row["name"] for row in listed} == {"Electronics", "Audio", "House"}
    _assert_served_from_cache(
        api_client, django_assert_num_queries, speaker_url, cached[speaker_url]
    )


def test_a_rename_past_the_exact_limit_refreshes_the_whole_catalog(
    api_client: APIClient,
    shop: Shop,
    committed: Committed,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "EXACT_PRODUCT_BUMPS_MAX", 1)  # home holds two products
    _warm(api_client, product_url(shop.lamp.pk), product_url(shop.speaker.pk))

    with committed():
        services.category_update(category=shop.home, name="House")

    assert api_client.get(product_url(shop.lamp.pk)).json()["category_name"] == "House"
    assert api_client.get(product_url(shop.kettle.pk)).json()["category_name"] == "House"


def test_moving_a_category_changes_what_the_category_filter_lists(
    api_client: APIClient,
    staff_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    electronics_list = f"{PRODUCT_LIST_URL}?category={shop.electronics.pk}"
    home_list = f"{PRODUCT_LIST_URL}?category={shop.home.pk}"
    lamp_url = product_url(shop.lamp.pk)
    cached = _warm(api_client, electronics_list, home_list, category_url(shop.audio.pk), lamp_url)
    assert result_ids(api_client.get(electronics_list)) == [shop.speaker.pk]

    with committed():
        moved = staff_client.patch(
            category_url(shop.audio.pk), {"parent": shop.home.pk}, format="json"
        )

    assert moved.status_code == 200
    assert result_ids(api_client.get(electronics_list)) == []
    assert shop.speaker.pk in result_ids(api_client.get(home_list))
    audio = api_client.get(category_url(shop.audio.pk)).json()
    assert (audio["parent"], audio["depth"]) == (shop.home.pk, 1)
    # a move changes no product's own representation
    _assert_served_from_cache(api_client, django_assert_num_queries, lamp_url, cached[lamp_url])


def test_a_new_category_is_listed_and_product_pages_stay_cached(
    api_client: APIClient,
    staff_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    cached = _warm(api_client, CATEGORY_LIST_URL, PRODUCT_LIST_URL)

    with committed():
        created = staff_client.post(
            CATEGORY_LIST_URL, {"name": "Garden", "parent": shop.home.pk}, format="json"
        )

    assert created.status_code == 201
    listed = api_client.get(CATEGORY_LIST_URL).json()["results"]
    assert {row["name"] for row in listed} == {"Electronics", "Audio", "Home", "Garden"}
    _assert_served_from_cache(
        api_client, django_assert_num_queries, PRODUCT_LIST_URL, cached[PRODUCT_LIST_URL]
    )


def test_a_deleted_category_is_gone_and_filtering_by_it_is_400(
    api_client: APIClient,
    staff_client: APIClient,
    shop: Shop,
    committed: Committed,
) -> None:
    empty = services.category_create(name="Empty", parent=shop.home)
    empty_list = f"{PRODUCT_LIST_URL}?category={empty.pk}"
    _warm(api_client, CATEGORY_LIST_URL, category_url(empty.pk), empty_list)

    with committed():
        assert staff_client.delete(category_url(empty.pk)).status_code == 204

    assert api_client.get(category_url(empty.pk)).status_code == 404
    assert empty.pk not in result_ids(api_client.get(CATEGORY_LIST_URL))
    refused = api_client.get(empty_list)
    assert refused.status_code == 400
    assert error_of(refused)["details"] == {"category": [f"Category {empty.pk} does not exist."]}


# --- reviews --------------------------------------------------------------------------------


def test_reviews_move_the_rating_shown_at_once(
    api_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    lamp_url, kettle_url = product_url(shop.lamp.pk), product_url(shop.kettle.pk)
    cached = _warm(api_client, lamp_url, kettle_url, PRODUCT_LIST_URL)
    first_author, second_author = UserFactory(), UserFactory()

    def rating() -> tuple[int, str | None]:
        body = api_client.get(lamp_url).json()
        listed = _row(api_client.get(PRODUCT_LIST_URL), shop.lamp)
        assert (listed["review_count"], listed["rating_average"]) == (
            body["review_count"],
            body["rating_average"],
        )
        return body["review_count"], body["rating_average"]

    with committed():
        first = make_review(product=shop.lamp, user=first_author, rating=5)
    assert rating() == (1, "5.00")
    with committed():
        client_for(second_author).post(
            f"/api/products/{shop.lamp.pk}/reviews/", {"rating": 2}, format="json"
        )
    assert rating() == (2, "3.50")
    with committed():
        review_services.review_update(review=first, rating=3)
    assert rating() == (2, "2.50")
    with committed():
        review_services.review_delete(review=first)
    assert rating() == (1, "2.00")
    _assert_served_from_cache(api_client, django_assert_num_queries, kettle_url, cached[kettle_url])


def test_editing_only_a_review_comment_keeps_the_product_cached(
    api_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    review = make_review(product=shop.lamp, user=UserFactory(), rating=4, comment="Nice")
    lamp_url = product_url(shop.lamp.pk)
    cached = _warm(api_client, lamp_url)

    with committed():
        review_services.review_update(review=review, comment="Very nice")

    _assert_served_from_cache(api_client, django_assert_num_queries, lamp_url, cached[lamp_url])


# --- admin and bulk writes --------------------------------------------------------------------


def test_admin_product_saves_and_deletes_are_shown_at_once(
    api_client: APIClient, shop: Shop, committed: Committed
) -> None:
    product_admin = admin.site._registry[Product]
    request = RequestFactory().post("/admin/")
    _warm(api_client, product_url(shop.lamp.pk), product_url(shop.kettle.pk), PRODUCT_LIST_URL)

    shop.lamp.price = Decimal("21.00")
    with committed():
        product_admin.save_model(request, shop.lamp, form=None, change=True)
    assert api_client.get(product_url(shop.lamp.pk)).json()["price"] == "21.00"

    with committed():
        product_admin.delete_queryset(request, Product.objects.filter(pk=shop.kettle.pk))
    assert api_client.get(product_url(shop.kettle.pk)).status_code == 404
    assert shop.kettle.pk not in result_ids(api_client.get(PRODUCT_LIST_URL))


def test_admin_category_deletes_are_shown_at_once(
    api_client: APIClient, shop: Shop, committed: Committed
) -> None:
    category_admin = admin.site._registry[Category]
    request = RequestFactory().post("/admin/")
    spare = services.category_create(name="Spare")
    other = services.category_create(name="Other")
    _warm(api_client, CATEGORY_LIST_URL, category_url(spare.pk))

    with committed():
        category_admin.delete_model(request, spare)
    assert api_client.get(category_url(spare.pk)).status_code == 404
    with committed():
        category_admin.delete_queryset(request, Category.objects.filter(pk=other.pk))
    listed = result_ids(api_client.get(CATEGORY_LIST_URL))
    assert sorted(listed) == sorted([shop.electronics.pk, shop.audio.pk, shop.home.pk])


def test_a_bulk_invalidation_refreshes_every_catalog_response(
    api_client: APIClient, shop: Shop, committed: Committed
) -> None:
    _warm(api_client, product_url(shop.lamp.pk), PRODUCT_LIST_URL, CATEGORY_LIST_URL)
    # A bulk write straight to the table, as an import or the demo seeding does.
    Product.objects.update(price=Decimal("1.00"))
    Category.objects.filter(pk=shop.home.pk).update(name="House")

    with committed():
        services.catalog_cache_invalidate()

    assert api_client.get(product_url(shop.lamp.pk)).json()["price"] == "1.00"
    assert {row["price"] for row in api_client.get(PRODUCT_LIST_URL).json()["results"]} == {"1.00"}
    names = [row["name"] for row in api_client.get(CATEGORY_LIST_URL).json()["results"]]
    assert "House" in names


# --- HTTP: validators, 304, headers -----------------------------------------------------------


def _catalog_urls(shop: Shop) -> list[str]:
    return [
        PRODUCT_LIST_URL,
        f"{PRODUCT_LIST_URL}?category={shop.home.pk}&ordering=price&page_size=1",
        product_url(shop.lamp.pk),
        CATEGORY_LIST_URL,
        category_url(shop.home.pk),
    ]


def test_catalog_reads_carry_a_strong_etag_last_modified_and_cache_control(
    api_client: APIClient, shop: Shop
) -> None:
    for url in _catalog_urls(shop):
        response = api_client.get(url)

        assert response.status_code == 200, url
        assert response["Content-Type"] == "application/json"
        assert response["ETag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'
        assert response["Last-Modified"].endswith(" GMT")
        assert response["Cache-Control"] == "public, max-age=5, stale-while-revalidate=30"


@override_settings(CATALOG_CACHE_MAX_AGE=17, CATALOG_CACHE_STALE_WHILE_REVALIDATE=0)
def test_cache_control_follows_the_settings(api_client: APIClient, shop: Shop) -> None:
    response = api_client.get(product_url(shop.lamp.pk))

    assert response["Cache-Control"] == "public, max-age=17, stale-while-revalidate=0"


def test_if_none_match_is_304_without_queries_or_rendering(
    api_client: APIClient,
    shop: Shop,
    renders: list[int],
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    for url in _catalog_urls(shop):
        etag = api_client.get(url)["ETag"]
        renders.clear()

        with django_assert_num_queries(0):
            response = api_client.get(url, HTTP_IF_NONE_MATCH=etag)

        assert response.status_code == 304, url
        assert response.content == b""
        assert response["ETag"] == etag
        assert response["Cache-Control"].startswith("public, ")
        assert renders == []


def test_if_modified_since_is_304_without_queries(
    api_client: APIClient, shop: Shop, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    first = api_client.get(product_url(shop.lamp.pk))

    with django_assert_num_queries(0):
        response = api_client.get(
            product_url(shop.lamp.pk), HTTP_IF_MODIFIED_SINCE=first["Last-Modified"]
        )

    assert response.status_code == 304


def test_after_a_write_the_old_etag_gets_200_and_a_new_etag(
    api_client: APIClient, shop: Shop, committed: Committed
) -> None:
    old = api_client.get(product_url(shop.lamp.pk))

    with committed():
        services.product_update(product=shop.lamp, price=Decimal("22.00"))
    response = api_client.get(product_url(shop.lamp.pk), HTTP_IF_NONE_MATCH=old["ETag"])

    assert response.status_code == 200
    assert response.json()["price"] == "22.00"
    assert response["ETag"] != old["ETag"]
    assert response["ETag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'


def test_a_matching_etag_is_304_even_when_the_entry_had_to_be_rebuilt(
    api_client: APIClient, shop: Shop
) -> None:
    etag = api_client.get(product_url(shop.lamp.pk))["ETag"]
    caches[settings.CATALOG_CACHE_ALIAS].clear()  # evicted, or the server restarted

    response = api_client.get(product_url(shop.lamp.pk), HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 304


def test_anonymous_and_authenticated_readers_get_the_same_bytes(
    api_client: APIClient, customer: User, shop: Shop, renders: list[int]
) -> None:
    for url in _catalog_urls(shop):
        anonymous = api_client.get(url)
        renders.clear()
        signed_in = client_for(customer).get(url)
        staff = client_for(StaffFactory()).get(url)

        assert signed_in.content == staff.content == anonymous.content, url
        assert signed_in["ETag"] == anonymous["ETag"]
        assert renders == []  # served from the entry the anonymous read stored


def test_head_answers_with_the_same_validators(api_client: APIClient, shop: Shop) -> None:
    get = api_client.get(product_url(shop.lamp.pk))
    head = api_client.head(product_url(shop.lamp.pk))

    assert head.status_code == 200
    assert head["ETag"] == get["ETag"]


def test_an_invalid_token_is_still_refused_on_a_cached_read(
    api_client: APIClient, shop: Shop
) -> None:
    api_client.get(product_url(shop.lamp.pk))
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")

    response = stranger.get(product_url(shop.lamp.pk))

    assert response.status_code == 401


# --- errors are never cached ---------------------------------------------------------------


@pytest.fixture
def list_computations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts product list pages built from the database, on either read path."""
    calls: list[int] = []
    for name in ("product_list", "product_page_rows"):  # DRF path, lean path
        real = getattr(selectors, name)

        def counting(real: Any = real, **kwargs: Any) -> Any:
            calls.append(1)
            return real(**kwargs)

        monkeypatch.setattr(selectors, name, counting)
    return calls


@pytest.mark.parametrize(
    "query",
    [
        "min_price=abc",
        "ordering=stock",
        "page_size=0",
        "min_price=5&max_price=1",
        "in_stock=maybe",
        "cursor=garbage",
    ],
)
def test_a_bad_filter_is_400_every_time_and_never_reaches_the_cache(
    api_client: APIClient, shop: Shop, query: str, list_computations: list[int]
) -> None:
    responses = [api_client.get(f"{PRODUCT_LIST_URL}?{query}") for _ in range(2)]

    assert [response.status_code for response in responses] == [400, 400]
    assert all("ETag" not in response for response in responses)
    assert list_computations == []


@pytest.mark.parametrize("query", ["category=999999"])
def test_an_error_found_while_building_the_page_is_not_cached(
    api_client: APIClient, shop: Shop, query: str, list_computations: list[int]
) -> None:
    responses = [api_client.get(f"{PRODUCT_LIST_URL}?{query}") for _ in range(2)]

    assert [response.status_code for response in responses] == [400, 400]
    assert all("ETag" not in response for response in responses)
    assert len(list_computations) == 2


def test_a_missing_product_or_category_is_404_every_time(
    api_client: APIClient, shop: Shop, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    # Through the test client both take Django's path: one lookup answers the 404.
    for url, queries in ((product_url(999_999), 1), (category_url(999_999), 1)):
        api_client.get(url)
        with django_assert_num_queries(queries):
            response = api_client.get(url)
        assert response.status_code == 404
        assert "ETag" not in response


# --- keys ---------------------------------------------------------------------------------


def test_the_same_query_in_another_order_is_the_same_entry(
    api_client: APIClient, shop: Shop, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    first = api_client.get(f"{PRODUCT_LIST_URL}?ordering=price&page_size=2&in_stock=true")

    with django_assert_num_queries(0):
        second = api_client.get(f"{PRODUCT_LIST_URL}?in_stock=true&page_size=2&ordering=price")

    assert second.content == first.content


def test_parameters_the_list_ignores_share_its_entry_and_stay_out_of_its_links(
    api_client: APIClient, shop: Shop, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    plain = api_client.get(f"{PRODUCT_LIST_URL}?page_size=1&ordering=name")

    with django_assert_num_queries(0):
        noisy = api_client.get(f"{PRODUCT_LIST_URL}?page_size=1&ordering=name&utm_source=mail")

    assert noisy.content == plain.content
    link_query = parse_qs(urlsplit(noisy.json()["next"]).query)
    assert set(link_query) == {"page_size", "ordering", "cursor"}


def test_a_repeated_parameter_counts_with_its_last_value_like_the_list_reads_it(
    api_client: APIClient, shop: Shop, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    by_price = api_client.get(f"{PRODUCT_LIST_URL}?ordering=price")

    with django_assert_num_queries(0):
        repeated = api_client.get(f"{PRODUCT_LIST_URL}?ordering=name&ordering=price")

    assert repeated.content == by_price.content
    assert result_ids(repeated) == [shop.lamp.pk, shop.kettle.pk, shop.speaker.pk]


def test_every_filter_ordering_and_page_is_its_own_entry(api_client: APIClient, shop: Shop) -> None:
    expectations = {
        "": [shop.speaker.pk, shop.kettle.pk, shop.lamp.pk],
        "?ordering=price": [shop.lamp.pk, shop.kettle.pk, shop.speaker.pk],
        "?ordering=-price": [shop.speaker.pk, shop.kettle.pk, shop.lamp.pk],
        f"?category={shop.electronics.pk}": [shop.speaker.pk],
        "?min_price=30&max_price=50": [shop.kettle.pk],
        "?q=lamp": [shop.lamp.pk],
        "?ordering=price&page_size=1": [shop.lamp.pk],
        "?ordering=price&page_size=2": [shop.lamp.pk, shop.kettle.pk],
    }
    for _ in range(2):  # the second round is served from the entries of the first
        for query, ids in expectations.items():
            assert result_ids(api_client.get(f"{PRODUCT_LIST_URL}{query}")) == ids, query
    page_two = api_client.get(
        api_client.get(f"{PRODUCT_LIST_URL}?ordering=price&page_size=1").json()["next"]
    )
    assert result_ids(page_two) == [shop.kettle.pk]


def test_links_point_at_the_host_that_was_asked(api_client: APIClient, shop: Shop) -> None:
    here = api_client.get(f"{PRODUCT_LIST_URL}?page_size=1", HTTP_HOST="localhost")
    there = api_client.get(f"{PRODUCT_LIST_URL}?page_size=1", HTTP_HOST="testserver")

    assert urlsplit(here.json()["next"]).netloc == "localhost"
    assert urlsplit(there.json()["next"]).netloc == "testserver"


# --- stampede (PostgreSQL and Redis) ----------------------------------------------------------


@pytest.fixture
def slow_list_computations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts product list pages built from the database (either path), each taking a while."""
    calls: list[int] = []
    lock = threading.Lock()
    for name in ("product_list", "product_page_rows"):  # DRF path, lean path
        real = getattr(selectors, name)

        def counting(real: Any = real, **kwargs: Any) -> Any:
            with lock:
                calls.append(1)
            time.sleep(0.2)  # keeps the others arriving while this one computes
            return real(**kwargs)

        monkeypatch.setattr(selectors, name, counting)
    return calls


def _require_postgresql_and_redis() -> None:
    require_service("DATABASE_URL")
    require_service("REDIS_URL")


def _stampede(url: str, *, threads: int) -> list[tuple[int, bytes]]:
    def read(_: int) -> tuple[int, bytes]:
        response = Client().get(url)
        return response.status_code, response.content

    return run_concurrently(read, list(range(threads)), workers=threads)


@pytest.mark.django_db(transaction=True)
def test_many_readers_of_an_expired_hot_page_cause_one_recomputation(
    slow_list_computations: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_postgresql_and_redis()
    Shop()
    warm = Client().get(PRODUCT_LIST_URL)
    assert slow_list_computations == [1]
    real_now = response_cache._now
    later = settings.CATALOG_CACHE_FRESH_SECONDS + 1
    monkeypatch.setattr(response_cache, "_now", lambda: real_now() + later)

    results = _stampede(PRODUCT_LIST_URL, threads=12)

    assert len(slow_list_computations) == 2  # the warm-up and exactly one refresh
    assert results == [(200, warm.content)] * 12


@pytest.mark.django_db(transaction=True)
def test_many_readers_right_after_a_write_cause_one_recomputation(
    slow_list_computations: list[int],
) -> None:
    _require_postgresql_and_redis()
    shop = Shop()
    Client().get(PRODUCT_LIST_URL)
    services.product_update(product=shop.lamp, price=Decimal("19.00"))  # commits, and bumps

    results = _stampede(PRODUCT_LIST_URL, threads=12)

    assert len(slow_list_computations) == 2
    assert {status for status, _ in results} == {200}
    assert len({body for _, body in results}) == 1
    assert b'"19.00"' in results[0][1]


# --- Redis away, and the embedded profile ------------------------------------------------------


@pytest.fixture
def proxied_catalog_cache(
    redis_url: str, tcp_proxy: Callable[[str, int], TcpProxy]
) -> Callable[[bool], AbstractContextManager[TcpProxy]]:
    """The catalog cache on the real Redis, reached through a proxy the test can cut."""
    target = urlsplit(redis_url)
    proxy = tcp_proxy(target.hostname or "127.0.0.1", target.port or 6379)

    @contextmanager
    def configured(ignore_exceptions: bool) -> Iterator[TcpProxy]:
        url = f"redis://{proxy.url_host}{target.path}"
        catalog = cache_config(
            url,
            key_prefix="emporium-test-catalog-proxied",
            ignore_exceptions=ignore_exceptions,
        )
        with override_settings(
            CACHES={**settings.CACHES, "catalog": catalog},
            CATALOG_CACHE_FAILURE_BACKOFF_SECONDS=0,
        ):
            caches["catalog"].clear()
            response_cache.local_state_reset()
            try:
                yield proxy
            finally:
                if not proxy._listener:
                    proxy.restore()
                caches["catalog"].clear()
                response_cache.local_state_reset()

    return configured


@pytest.mark.parametrize("ignore_exceptions", [True, False])
def test_with_redis_cut_off_the_catalog_answers_from_the_database(
    api_client: APIClient,
    shop: Shop,
    committed: Committed,
    ignore_exceptions: bool,
    proxied_catalog_cache: Callable[[bool], AbstractContextManager[TcpProxy]],
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    lamp_url = product_url(shop.lamp.pk)
    with proxied_catalog_cache(ignore_exceptions) as proxy:
        cached = _warm(api_client, lamp_url, PRODUCT_LIST_URL, CATEGORY_LIST_URL)
        _assert_served_from_cache(api_client, django_assert_num_queries, lamp_url, cached[lamp_url])

        proxy.cut()
        for url in (lamp_url, PRODUCT_LIST_URL, CATEGORY_LIST_URL, category_url(shop.home.pk)):
            response = api_client.get(url)
            assert response.status_code == 200, url
        with committed():  # the invalidation cannot reach Redis now
            services.product_update(product=shop.lamp, price=Decimal("23.00"))
        during = api_client.get(lamp_url)
        assert during.status_code == 200
        assert during.json() == product_body(shop.lamp)
        assert _row(api_client.get(PRODUCT_LIST_URL), shop.lamp)["price"] == "23.00"

        proxy.restore()  # Redis is back, still holding the entry from before the write
        after = api_client.get(lamp_url)
        assert (after.status_code, after.json()["price"]) == (200, "23.00")
        _assert_served_from_cache(api_client, django_assert_num_queries, lamp_url, after.content)


def test_the_embedded_profile_caches_and_invalidates_the_same_way(
    api_client: APIClient,
    shop: Shop,
    committed: Committed,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    in_process = cache_config(None, key_prefix="embedded-catalog", location="embedded-catalog")
    with override_settings(CACHES={**settings.CACHES, "catalog": in_process}):
        caches["catalog"].clear()
        lamp_url, kettle_url = product_url(shop.lamp.pk), product_url(shop.kettle.pk)
        cached = _warm(api_client, lamp_url, kettle_url, PRODUCT_LIST_URL)
        etag = api_client.get(lamp_url)["ETag"]
        with django_assert_num_queries(0):
            assert api_client.get(lamp_url, HTTP_IF_NONE_MATCH=etag).status_code == 304

        with committed():
            services.product_update(product=shop.lamp, stock_quantity=1)

        fresh = api_client.get(lamp_url, HTTP_IF_NONE_MATCH=etag)
        assert (fresh.status_code, fresh.json()["stock_quantity"]) == (200, 1)
        assert _row(api_client.get(PRODUCT_LIST_URL), shop.lamp)["stock_quantity"] == 1
        _assert_served_from_cache(
            api_client, django_assert_num_queries, kettle_url, cached[kettle_url]
        )
        caches["catalog"].clear()
