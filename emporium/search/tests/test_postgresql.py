"""PostgreSQL specifics: the stored vector, websearch syntax, the vocabulary and corrections."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from emporium.catalog import services as catalog_services
from emporium.core.tests.factories import CategoryFactory, ProductFactory
from emporium.search.tests.support import require_postgresql

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _uncached(settings: Any) -> None:
    """These tests write with factories between searches and look at the engine itself;
    the response cache in front of it, invalidated by the services, is tested in test_cache.py."""
    settings.CATALOG_CACHE_ENABLED = False


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


def test_typo_is_corrected_against_the_vocabulary(api_client: APIClient) -> None:
    laptop = ProductFactory(name="Laptop stand", description="")
    ProductFactory(name="Garden hose", description="")
    body = api_client.get("/api/search/", {"q": "laptpo"}).json()
    assert (body["match"], body["corrected_query"]) == ("fuzzy", "laptop")
    assert [hit["id"] for hit in body["results"]] == [laptop.pk]
    # The corrected query went through full text: ranked and highlighted as usual.
    assert body["results"][0]["name_highlighted"] == "<mark>Laptop</mark> stand"
    assert body["results"][0]["rank"] > 0


def test_correction_keeps_the_query_syntax_and_the_filters(api_client: APIClient) -> None:
    kitchen, garden = CategoryFactory(name="Kitchen"), CategoryFactory(name="Garden")
    wool = ProductFactory(name="Red wool scarf", description="", category=kitchen)
    ProductFactory(name="Red silk scarf", description="", category=kitchen)
    ProductFactory(name="Red wool scarf", description="", category=garden)
    body = api_client.get("/api/search/", {"q": "scarv -silk", "category": kitchen.pk}).json()
    assert body["corrected_query"] == "scarf -silk"
    assert [hit["id"] for hit in body["results"]] == [wool.pk]


def vocabulary() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT word, documents FROM search_vocabulary")
        return dict(cursor.fetchall())


def test_vocabulary_counts_follow_every_write() -> None:
    table = ProductFactory(name="Oak table", description="")
    chair = ProductFactory(name="Oak chair, oak legs", description="")
    assert vocabulary() == {"oak": 2, "table": 1, "chair": 1, "legs": 1}
    chair.name = "Pine chair"
    chair.save(update_fields=["name"])
    assert vocabulary() == {"oak": 1, "table": 1, "chair": 1, "pine": 1}
    # A save that does not change the name changes nothing.
    chair.save()
    assert vocabulary()["chair"] == 1
    type(table).objects.filter(pk=table.pk).update(name="Pine table")
    assert vocabulary() == {"table": 1, "chair": 1, "pine": 2}
    chair.delete()
    assert vocabulary() == {"table": 1, "pine": 1}


@pytest.mark.django_db(transaction=True)
def test_truncating_products_empties_the_vocabulary() -> None:
    # Row triggers do not fire on TRUNCATE (Django's test flush uses it).
    ProductFactory(name="Oak table", description="")
    assert vocabulary() == {"oak": 1, "table": 1}
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE catalog_product CASCADE")
    assert vocabulary() == {}


def test_a_new_product_is_found_by_a_misspelling_right_away(api_client: APIClient) -> None:
    ProductFactory(name="Garden hose", description="")
    body = api_client.get("/api/search/", {"q": "hamock"}).json()
    assert (body["results"], body["corrected_query"]) == ([], None)
    hammock = ProductFactory(name="Zanzibar hammock", description="")
    body = api_client.get("/api/search/", {"q": "hamock"}).json()
    assert body["corrected_query"] == "hammock"
    assert [hit["id"] for hit in body["results"]] == [hammock.pk]


def test_a_renamed_products_old_words_are_no_longer_suggested(api_client: APIClient) -> None:
    cushion = ProductFactory(name="Velvet cushion", description="")
    assert api_client.get("/api/search/", {"q": "velvit"}).json()["corrected_query"] == "velvet"
    cushion.name = "Linen cushion"
    cushion.save(update_fields=["name"])
    body = api_client.get("/api/search/", {"q": "velvit"}).json()
    assert (body["results"], body["corrected_query"], body["suggestions"]) == ([], None, [])


def test_known_words_that_never_occur_together_run_no_fallback(
    api_client: APIClient,
) -> None:
    from django.db import connection as default_connection
    from django.test.utils import CaptureQueriesContext

    ProductFactory(name="Oak table", description="")
    ProductFactory(name="Pine chairs", description="")
    with CaptureQueriesContext(default_connection) as captured:
        body = api_client.get("/api/search/", {"q": "oak chair"}).json()
    # "chair" is known through the stem of "chairs": nothing is corrected and
    # the names are not scanned; with nothing to correct there is nothing to suggest.
    assert (body["results"], body["match"], body["corrected_query"]) == ([], "full_text", None)
    assert body["suggestions"] == []
    statements = " ".join(query["sql"] for query in captured.captured_queries)
    assert "word_similarity(" not in statements
    assert "<%" not in statements


def test_the_word_being_typed_is_known_by_its_start(api_client: APIClient) -> None:
    ProductFactory(name="Oak table", description="")
    ProductFactory(name="Pine wardrobe", description="")
    body = api_client.get("/api/search/", {"q": "oak wardr"}).json()
    # "wardr" starts a known word, so it is not "corrected" to something else.
    assert (body["results"], body["corrected_query"], body["suggestions"]) == ([], None, [])
    # The same word misspelt is corrected, whole.
    body = api_client.get("/api/search/", {"q": "pine wadrobe"}).json()
    assert body["corrected_query"] == "pine wardrobe"


def test_suggestions_are_other_corrections_that_find_products(api_client: APIClient) -> None:
    ProductFactory(name="Oak cable", description="")
    ProductFactory(name="Pine label", description="")
    # "cabel" is as close to "cable" as to "label" (similarity 1/3, ties by
    # word); "pine cable" finds nothing, "pine label" does.
    body = api_client.get("/api/search/", {"q": "pine cabel"}).json()
    assert (body["results"], body["corrected_query"]) == ([], None)
    assert body["suggestions"] == ["pine label"]


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
    # Nothing under this price: the suggestions run too (they turn seqscan off).
    body = api_client.get("/api/search/", {"q": "laptpo", "max_price": "0"}).json()
    assert body["suggestions"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'),"
            " current_setting('pg_trgm.word_similarity_threshold'),"
            " current_setting('enable_seqscan')"
        )
        assert cursor.fetchone() == ("0", "0.6", "on")


def test_a_fuzzy_search_past_its_time_limit_finds_nothing_instead_of_failing(
    api_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emporium.search.backends import PostgresSearchBackend

    ProductFactory(name="Laptop stand", description="")
    # pg_sleep outlasts the limit, so PostgreSQL cancels the statement.
    monkeypatch.setattr(PostgresSearchBackend, "FUZZY_TIMEOUT_MS", 10)
    original = PostgresSearchBackend._bounded

    @contextlib.contextmanager
    def bounded_then_sleep(self: PostgresSearchBackend, threshold: str) -> Iterator[Any]:
        with original(self, threshold) as cursor:
            cursor.execute("SELECT pg_sleep(0.5)")
            yield cursor

    monkeypatch.setattr(PostgresSearchBackend, "_bounded", bounded_then_sleep)
    response = api_client.get("/api/search/", {"q": "laptpo"})
    assert response.status_code == 200
    body = response.json()
    assert (body["results"], body["suggestions"]) == ([], [])
