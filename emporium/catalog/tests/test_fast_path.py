"""The lean read path answers exactly as the DRF path would, only sooner.

The cache tests read once to fill the cache, then compare the answer of the
gateway (``config.wsgi``: the lean path in front of Django) with the answer of
Django's handler alone for the same request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from pytest_django import DjangoAssertNumQueries

from emporium.catalog import fast_path
from emporium.catalog.tests.conftest import Reader
from emporium.catalog.tests.support import PRODUCT_LIST_URL, product_url
from emporium.core.cache import Outcome
from emporium.core.tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


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


@pytest.fixture
def postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the lean path answers where PostgreSQL writes the rows")


@pytest.fixture
def product_urls() -> list[str]:
    products = ProductFactory.create_batch(3)
    return [PRODUCT_LIST_URL, f"{PRODUCT_LIST_URL}?ordering=price", product_url(products[0].pk)]


@pytest.mark.usefixtures("postgresql")
def test_a_cache_hit_takes_the_fast_path_with_the_drf_bytes_and_headers(
    reader: Reader,
    fast_hits: list[str],
    product_urls: list[str],
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    for url in product_urls:
        first = reader.drf(url)  # a miss: DRF renders and stores
        assert first[0] == 200
        fast_hits.clear()
        with django_assert_num_queries(0):
            fast = reader.lean(url)
        assert len(fast_hits) == 1
        assert reader.answered[-1] == url
        assert fast == reader.drf(url) == first
        assert fast[2]["Vary"] == "Cookie"
        assert "Allow" in fast[2]
        for header in ("ETag", "Last-Modified", "Cache-Control", "X-Content-Type-Options"):
            assert header in fast[2]


@pytest.mark.usefixtures("postgresql")
def test_if_none_match_is_a_304_on_the_fast_path_as_on_the_drf_path(
    reader: Reader, fast_hits: list[str], product_urls: list[str]
) -> None:
    for url in product_urls:
        status, _, headers = reader.lean(url)
        assert status == 200
        fast_hits.clear()
        fast = reader.lean(url, if_none_match=headers["ETag"])
        assert len(fast_hits) == 1
        assert fast[0] == 304
        assert fast[1] == b""
        assert fast == reader.drf(url, if_none_match=headers["ETag"])
        stale_tag = reader.lean(url, if_none_match='"not-the-etag"')
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
    reader: Reader,
    fast_hits: list[str],
    product_urls: list[str],
    headers: dict[str, str],
    status: int,
) -> None:
    for url in product_urls:
        assert reader.lean(url)[0] == 200  # the entry is in the cache
        fast_hits.clear()
        reader.answered.clear()
        served = reader.lean(url, **headers)
        assert fast_hits == []
        assert reader.answered == []
        assert served == reader.drf(url, **headers)
        assert served[0] == status


def test_an_invalid_filter_is_still_a_400_after_a_valid_read_filled_the_cache(
    reader: Reader, fast_hits: list[str]
) -> None:
    ProductFactory()
    assert reader.lean(f"{PRODUCT_LIST_URL}?min_price=5")[0] == 200
    status, body, _ = reader.lean(f"{PRODUCT_LIST_URL}?min_price=five")
    assert status == 400
    assert b'"code"' in body
    assert fast_hits == []


def test_with_the_cache_disabled_every_read_is_computed(
    reader: Reader,
    fast_hits: list[str],
    product_urls: list[str],
    django_assert_max_num_queries: Callable[[int], Any],
) -> None:
    with override_settings(CATALOG_CACHE_ENABLED=False):
        for url in product_urls:
            first = reader.lean(url)
            second = reader.lean(url)
            assert first[0] == second[0] == 200
            assert first[1] == second[1]
    assert fast_hits == []
