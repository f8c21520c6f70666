"""``GET /api/search/suggest/`` on whichever engine the suite runs (SQLite FTS5 or PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_django import DjangoAssertNumQueries
from rest_framework.test import APIClient

from emporium.core.tests.factories import CategoryFactory, ProductFactory
from emporium.search.backends import close_completions, completion_typo_allowance
from emporium.search.selectors import COMPLETIONS_MAX, SUGGEST_MAX_LENGTH

pytestmark = pytest.mark.django_db

URL = "/api/search/suggest/"


def suggest(client: APIClient, q: str) -> dict[str, Any]:
    response = client.get(URL, {"q": q})
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def lights() -> None:
    ProductFactory(name="Brass lamp", description="A lantern-like lamp.")
    ProductFactory(name="Desk lamp", description="")
    ProductFactory(name="Camping lantern", description="")
    ProductFactory(name="Laptop stand", description="")
    ProductFactory(name="Laptop sleeve", description="")
    ProductFactory(name="Lamp oil", description="")


@pytest.mark.usefixtures("lights")
def test_completions_are_name_words_most_products_first(api_client: APIClient) -> None:
    body = suggest(api_client, "la")
    # lamp: 3 names, laptop: 2, lantern: 1 (descriptions do not count).
    assert body == {"query": "la", "completions": ["lamp", "laptop", "lantern"], "categories": []}


@pytest.mark.usefixtures("lights")
def test_the_words_before_the_last_are_kept_as_typed(api_client: APIClient) -> None:
    body = suggest(api_client, "  Brass   LAM")
    assert body["query"] == "Brass LAM"
    assert body["completions"] == ["Brass lamp"]


@pytest.mark.usefixtures("lights")
def test_a_typo_after_the_first_letters_is_tolerated(api_client: APIClient) -> None:
    # lamp: a swap; laptop: "lapt" is one letter off too, and has fewer products.
    assert suggest(api_client, "lapm")["completions"] == ["lamp", "laptop"]
    assert suggest(api_client, "lantren")["completions"] == ["lantern"]
    # The first letters pick the candidates: a typo there finds nothing.
    assert suggest(api_client, "almp")["completions"] == []


@pytest.mark.usefixtures("lights")
def test_exact_completions_come_before_close_ones(api_client: APIClient) -> None:
    ProductFactory(name="Lampshade", description="")
    # "lamp" and "lampshade" start with it; "laptop" is one edit from "lamp".
    assert suggest(api_client, "lamp")["completions"] == ["lamp", "lampshade", "laptop"]
    # Three letters are completed exactly: "lam" is not "lan" or "lap".
    assert suggest(api_client, "lam")["completions"] == ["lamp", "lampshade"]


def test_categories_with_a_word_starting_with_the_last_word(api_client: APIClient) -> None:
    lighting = CategoryFactory(name="Lamps and lighting")
    garden = CategoryFactory(name="Garden lamps", parent=lighting)
    CategoryFactory(name="Clamps")  # "lam" inside a word is not a match
    body = suggest(api_client, "lam")
    assert body["categories"] == [
        {"id": lighting.pk, "name": "Lamps and lighting"},
        {"id": garden.pk, "name": "Garden lamps"},
    ]


def test_nothing_to_complete(api_client: APIClient) -> None:
    ProductFactory(name="Desk lamp", description="")
    assert suggest(api_client, "zebra") == {"query": "zebra", "completions": [], "categories": []}
    assert suggest(api_client, "lamp!")["completions"] == []
    assert suggest(api_client, "'; DROP TABLE catalog_product; --")["completions"] == []


def test_at_most_so_many_completions(api_client: APIClient) -> None:
    for number in range(COMPLETIONS_MAX + 3):
        ProductFactory(name=f"Lamp model{number}", description="")
    assert len(suggest(api_client, "mo")["completions"]) == COMPLETIONS_MAX


@pytest.mark.usefixtures("lights")
def test_suggestions_are_cached(
    api_client: APIClient, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    first = api_client.get(URL, {"q": "la"})
    with django_assert_num_queries(0):
        again = api_client.get(URL, {"q": " la "})
        unchanged = api_client.get(URL, {"q": "la"}, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.content == first.content
    assert unchanged.status_code == 304
    assert first["Cache-Control"].startswith("public, max-age=")


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({}, "This field is required."),
        ({"q": ""}, "This field may not be blank."),
        ({"q": "   "}, "This field may not be blank."),
        (
            {"q": "l" * (SUGGEST_MAX_LENGTH + 1)},
            f"Ensure this field has no more than {SUGGEST_MAX_LENGTH} characters.",
        ),
        ({"q": "la\x00mp"}, "Null characters are not allowed."),
    ],
)
def test_bad_input_is_a_400_in_the_error_shape(
    api_client: APIClient, params: dict[str, str], problem: str
) -> None:
    response = api_client.get(URL, params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["details"]["q"] == [problem]


def test_typo_allowance_and_closeness() -> None:
    assert completion_typo_allowance("la") == 0
    assert completion_typo_allowance("lam") == 0
    assert completion_typo_allowance("lamp") == 1
    assert completion_typo_allowance("lantren") == 2
    assert completion_typo_allowance("x200") == 0
    # A swap, a dropped letter and a doubled one are one edit each; a word shorter
    # than what was typed is not a completion of it.
    assert close_completions("lapm", ["lamp", "lamb", "laptop", "la"]) == [
        "lamp",
        "lamb",
        "laptop",
    ]
    assert close_completions("lmap", ["lampshade", "lamp"]) == ["lampshade", "lamp"]
    assert close_completions("lantren", ["lantern", "landmark"]) == ["lantern"]
    assert close_completions("laamp", ["lamp"]) == ["lamp"]
    assert close_completions("la", ["lamp"]) == []
