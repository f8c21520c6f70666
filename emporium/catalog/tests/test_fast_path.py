"""The lean read path answers exactly as the DRF path would, only sooner.

The cache tests read once to fill the cache, then compare the lean answer with
the answer of the DRF path (the lean path switched off) for the same request.
The uncached tests (cache off) compare pages built from rows with pages built
from model instances, across filters, orderings and cursors in both directions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client, override_settings
from pytest_django import DjangoAssertNumQueries

from emporium.catalog import fast_path
from emporium.catalog.tests.support import PRODUCT_LIST_URL, product_url
from emporium.core.cache import Outcome
from emporium.core.tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

Answer = tuple[int, bytes, dict[str, str]]


@pytest.fixture
def fast_hits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys the lean path answered from a fresh cache entry, in order."""
    hits: list[str] = []
    original = fast_path.versioned_fetch

    def spy(**kwargs: Any) -> Any:
        lookup = original(**kwargs)
        if lookup.outcome is Outcome.HIT:
            hits.append(kwargs["key"])
        return lookup

    monkeypatch.setattr(fast_path, "versioned_fetch", spy)
    return hits


def answer(url: str, **headers: str) -> Answer:
    response = Client().get(url, headers=headers)
    return response.status_code, response.content, dict(response.headers.items())


def drf_answer(monkeypatch: pytest.MonkeyPatch, url: str, **headers: str) -> Answer:
    """The answer of the DRF path: the lean path is switched off."""
    with monkeypatch.context() as patch:
        patch.setattr(fast_path, "product_list", lambda *args, **kwargs: None)
        patch.setattr(fast_path, "product_detail", lambda *args, **kwargs: None)
        return answer(url, **headers)


@pytest.fixture
def product_urls() -> list[str]:
    products = ProductFactory.create_batch(3)
    return [PRODUCT_LIST_URL, f"{PRODUCT_LIST_URL}?ordering=price", product_url(products[0].pk)]


def test_a_cache_hit_takes_the_fast_path_with_the_drf_bytes_and_headers(
    monkeypatch: pytest.MonkeyPatch,
    fast_hits: list[str],
    product_urls: list[str],
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    for url in product_urls:
        first = answer(url)  # a miss: DRF renders and stores
        assert first[0] == 200
        fast_hits.clear()
        with django_assert_num_queries(0):
            fast = answer(url)
        assert len(fast_hits) == 1
        assert fast == drf_answer(monkeypatch, url) == first
        assert fast[2]["Vary"] == "Cookie"
        assert "Allow" in fast[2]
        for header in ("ETag", "Last-Modified", "Cache-Control", "X-Content-Type-Options"):
            assert header in fast[2]


def test_if_none_match_is_a_304_on_the_fast_path_as_on_the_drf_path(
    monkeypatch: pytest.MonkeyPatch, fast_hits: list[str], product_urls: list[str]
) -> None:
    for url in product_urls:
        status, _, headers = answer(url)
        assert status == 200
        fast_hits.clear()
        fast = answer(url, if_none_match=headers["ETag"])
        assert len(fast_hits) == 1
        assert fast[0] == 304
        assert fast[1] == b""
        assert fast == drf_answer(monkeypatch, url, if_none_match=headers["ETag"])
        stale_tag = answer(url, if_none_match='"not-the-etag"')
        assert stale_tag[0] == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"authorization": "Bearer not-a-token"}, 401),
        ({"authorization": "Basic Zm9vOmJhcg=="}, 200),  # no Basic authentication: ignored
        ({"accept": "text/html"}, 406),
    ],
)
def test_requests_the_drf_path_may_answer_differently_never_take_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
    fast_hits: list[str],
    product_urls: list[str],
    headers: dict[str, str],
    status: int,
) -> None:
    for url in product_urls:
        assert answer(url)[0] == 200  # the entry is in the cache
        fast_hits.clear()
        served = answer(url, **headers)
        assert fast_hits == []
        assert served == drf_answer(monkeypatch, url, **headers)
        assert served[0] == status


def test_an_invalid_filter_is_still_a_400_after_a_valid_read_filled_the_cache(
    fast_hits: list[str],
) -> None:
    ProductFactory()
    assert answer(f"{PRODUCT_LIST_URL}?min_price=5")[0] == 200
    status, body, _ = answer(f"{PRODUCT_LIST_URL}?min_price=five")
    assert status == 400
    assert b'"code"' in body
    assert fast_hits == []


def test_with_the_cache_disabled_every_read_is_computed(
    fast_hits: list[str],
    product_urls: list[str],
    django_assert_max_num_queries: Callable[[int], Any],
) -> None:
    with override_settings(CATALOG_CACHE_ENABLED=False):
        for url in product_urls:
            first = answer(url)
            second = answer(url)
            assert first[0] == second[0] == 200
            assert first[1] == second[1]
    assert fast_hits == []


def test_the_read_representation_renders_the_same_bytes_as_the_serializer() -> None:
    import datetime
    from decimal import Decimal

    from rest_framework.renderers import JSONRenderer

    from emporium.catalog.models import Product
    from emporium.catalog.serializers import ProductSerializer, product_representation

    ProductFactory(price=Decimal("0.5"), stock_quantity=0, attributes={})
    ProductFactory(
        price=Decimal("9999999999.99"),
        attributes={"colour": "red", "sizes": [1, 2], "nested": {"a": None}, "ünï": "ç"},
        description='line\nbreak "quoted" <tag>',
    )
    rated = ProductFactory(price=Decimal("12.30"))
    Product.objects.filter(pk=rated.pk).update(review_count=3, rating_total=11)
    odd_time = datetime.datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=datetime.UTC)
    Product.objects.filter(pk=rated.pk).update(created_at=odd_time)
    render = JSONRenderer().render
    products = list(Product.objects.select_related("category").order_by("id"))
    assert len(products) == 3
    for product in products:
        expected = render(ProductSerializer(product).data)
        assert render(product_representation(product)) == expected
