"""The word being typed, searched as the name lexemes it may be (PostgreSQL).

A partial match (``'head':*``) makes the full-text index gather every
posting of every lexeme with the prefix before intersecting; the search asks
the vocabulary which product-name lexemes start with the word and searches
those exactly when they are few, and keeps the partial match otherwise.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from emporium.core.tests.factories import ProductFactory
from emporium.core.tests.plans import plans_of
from emporium.search.backends import PostgresSearchBackend, _tsquery_lexeme
from emporium.search.tests.support import require_postgresql

pytestmark = pytest.mark.django_db


def found(api_client: APIClient, query: str) -> set[int]:
    response = api_client.get("/api/search/", {"q": query, "page_size": 50})
    assert response.status_code == 200, response.content
    return {hit["id"] for hit in response.json()["results"]}


def test_the_word_being_typed_is_searched_as_the_name_lexemes_it_starts(
    api_client: APIClient,
) -> None:
    require_postgresql()
    headphones = ProductFactory(name="Wireless headphones", description="")
    headset = ProductFactory(name="Wireless headset", description="")
    ProductFactory(name="Wireless mouse", description="")
    with plans_of("candidates AS MATERIALIZED") as plans:
        assert found(api_client, "wireless head") == {headphones.pk, headset.pk}
    plan = plans[0].replace("''", "'")  # the tsquery is shown as a quoted literal
    # Exact entries ORed, no partial match left for the index to gather.
    assert "'headphon'" in plan
    assert "'headset'" in plan
    assert ":*" not in plan


def test_a_word_only_descriptions_start_is_still_matched_as_a_prefix(
    api_client: APIClient,
) -> None:
    require_postgresql()
    lamp = ProductFactory(name="Desk lamp", description="Brass handles included.")
    ProductFactory(name="Desk chair", description="")
    with plans_of("candidates AS MATERIALIZED") as plans:
        assert found(api_client, "lamp hand") == {lamp.pk}
    plan = plans[0].replace("''", "'")
    assert "'hand':*" in plan


def test_too_many_name_lexemes_fall_back_to_the_partial_match(api_client: APIClient) -> None:
    require_postgresql()
    suffixes = "abcdefghijklmnopqr"  # 18 name words starting with "quib": over the limit
    assert len(suffixes) > PostgresSearchBackend.PREFIX_LEXEMES_MAX
    named = {ProductFactory(name=f"Quib{letter}x", description="").pk for letter in suffixes}
    described = ProductFactory(name="Other", description="A quibzzy thing.")
    assert found(api_client, "quib") == {*named, described.pk}


@pytest.mark.parametrize(
    ("lexeme", "expected"),
    [("steel", "'steel'"), ("it's", "'it''s'"), ("a\\b", "'a\\\\b'")],
)
def test_lexemes_are_quoted_as_tsquery_input_reads_them(lexeme: str, expected: str) -> None:
    assert _tsquery_lexeme(lexeme) == expected


def test_quoted_lexemes_match_exactly_themselves() -> None:
    require_postgresql()
    with connection.cursor() as cursor:
        for lexeme in ("steel", "it's", "a\\b", "o'neil\\"):
            cursor.execute(
                "SELECT array_to_tsvector(ARRAY[%s]) @@ %s::tsquery,"
                " array_to_tsvector(ARRAY[%s || 'x']) @@ %s::tsquery",
                [lexeme, _tsquery_lexeme(lexeme), lexeme, _tsquery_lexeme(lexeme)],
            )
            assert cursor.fetchone() == (True, False), lexeme


def test_the_word_being_typed_is_looked_up_once_per_search(api_client: APIClient) -> None:
    require_postgresql()
    product = ProductFactory(name="Wireless headphones", description="")
    # Misspelt before the last word: the corrected query is searched again
    # with the same last word.
    with CaptureQueriesContext(connection) as queries:
        assert found(api_client, "wirelss headphones") == {product.pk}
    look_ups = [
        query for query in queries if "FROM search_vocabulary WHERE lexeme ~>=~" in query["sql"]
    ]
    ranked = [query for query in queries if "candidates AS MATERIALIZED" in query["sql"]]
    assert len(ranked) == 2
    assert len(look_ups) == 1
