"""PostgreSQL specifics: the stored vector, websearch syntax and pg_trgm typo tolerance."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from emporium.catalog import services as catalog_services
from emporium.core.tests.factories import CategoryFactory, ProductFactory
from emporium.search.tests.support import require_postgresql

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    require_postgresql()


def stored_vector(product_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT search_vector::text FROM catalog_product WHERE id = %s", [product_id]
        )
        return str(cursor.fetchone()[0])


def ids(client: APIClient, **params: Any) -> list[int]:
    response = client.get("/api/search/", params)
    assert response.status_code == 200, response.content
    return [hit["id"] for hit in response.json()["results"]]


def test_vector_is_weighted_by_field() -> None:
    category = CategoryFactory(name="Kitchen")
    product = ProductFactory(name="Kettle", description="Boils water", category=category)
    assert stored_vector(product.pk) == "'boil':2B 'kettl':1A 'kitchen':4C 'water':3B"


def test_vector_follows_product_update_and_category_rename() -> None:
    category = CategoryFactory(name="Kitchen")
    product = ProductFactory(name="Kettle", description="Boils water", category=category)
    catalog_services.product_update(product=product, description="Steel")
    assert stored_vector(product.pk) == "'kettl':1A 'kitchen':3C 'steel':2B"
    catalog_services.category_update(category=category, name="Cookware")
    assert stored_vector(product.pk) == "'cookwar':3C 'kettl':1A 'steel':2B"


def test_indexes_and_extension_exist() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cursor.fetchone() == (1,)
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'catalog_product'"
            " AND indexname LIKE 'search_%%' ORDER BY indexname"
        )
        indexes = dict(cursor.fetchall())
    assert "USING gin (name gin_trgm_ops)" in indexes["search_product_name_trgm_idx"]
    assert "USING gin (search_vector)" in indexes["search_product_vector_idx"]


def test_websearch_syntax(api_client: APIClient) -> None:
    red_wool = ProductFactory(name="Red wool scarf", description="")
    red_silk = ProductFactory(name="Red silk scarf", description="")
    blue = ProductFactory(name="Blue wool hat", description="")
    assert ids(api_client, q="scarf -silk") == [red_wool.pk]
    assert set(ids(api_client, q="silk or hat")) == {red_silk.pk, blue.pk}
    assert ids(api_client, q='"wool scarf"') == [red_wool.pk]


def test_stemming_matches_other_forms(api_client: APIClient) -> None:
    product = ProductFactory(name="Running shoes", description="")
    assert ids(api_client, q="run shoe") == [product.pk]


def test_typo_tolerance_uses_trigram_similarity(api_client: APIClient) -> None:
    laptop = ProductFactory(name="Laptop stand", description="")
    ProductFactory(name="Garden hose", description="")
    response = api_client.get("/api/search/", {"q": "laptpo"})
    body = response.json()
    assert body["match"] == "fuzzy"
    assert [hit["id"] for hit in body["results"]] == [laptop.pk]
    # word_similarity('laptpo', 'Laptop stand'): 4 of the query's 7 trigrams
    assert body["results"][0]["rank"] == pytest.approx(4 / 7, abs=1e-6)


def test_stop_words_only_query_falls_back_to_names(api_client: APIClient) -> None:
    # "the" has no lexeme, so full text finds nothing; the name still contains it.
    product = ProductFactory(name="The thing", description="")
    ProductFactory(name="Other", description="")
    body = api_client.get("/api/search/", {"q": "the"}).json()
    assert body["match"] == "fuzzy"
    assert [hit["id"] for hit in body["results"]] == [product.pk]


def test_every_page_in_the_window_comes_from_the_ranked_candidates() -> None:
    from emporium.search.backends import PostgresSearchBackend
    from emporium.search.selectors import RESULT_WINDOW

    assert PostgresSearchBackend.RANK_CANDIDATES >= RESULT_WINDOW


@pytest.mark.django_db(transaction=True)
def test_fuzzy_limits_stay_inside_their_transaction(api_client: APIClient) -> None:
    ProductFactory(name="Laptop stand", description="")
    assert api_client.get("/api/search/", {"q": "laptpo"}).json()["match"] == "fuzzy"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'),"
            " current_setting('pg_trgm.word_similarity_threshold')"
        )
        assert cursor.fetchone() == ("0", "0.6")


def test_a_fuzzy_search_past_its_time_limit_finds_nothing_instead_of_failing(
    api_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emporium.search.backends import PostgresSearchBackend

    ProductFactory(name="Laptop stand", description="")
    # pg_sleep outlasts the limit, so PostgreSQL cancels the statement.
    monkeypatch.setattr(PostgresSearchBackend, "FUZZY_TIMEOUT_MS", 10)
    original = PostgresSearchBackend._bounded

    def bounded_then_sleep(self: PostgresSearchBackend, cursor: Any, threshold: str) -> None:
        original(self, cursor, threshold)
        cursor.execute("SELECT pg_sleep(0.5)")

    monkeypatch.setattr(PostgresSearchBackend, "_bounded", bounded_then_sleep)
    response = api_client.get("/api/search/", {"q": "laptpo"})
    assert response.status_code == 200
    body = response.json()
    assert (body["results"], body["suggestions"]) == ([], [])
