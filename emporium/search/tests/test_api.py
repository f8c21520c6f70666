"""The search endpoint on whichever engine the suite runs (SQLite FTS5 or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from emporium.catalog import services as catalog_services
from emporium.catalog.models import Product
from emporium.core.tests.factories import CategoryFactory, ProductFactory, make_category
from emporium.search.selectors import PAGE_SIZE_MAX, RESULT_WINDOW
from emporium.search.tests.support import speakers_catalog

pytestmark = pytest.mark.django_db

Committed = Callable[[], AbstractContextManager[Any]]


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Committed:
    """A block whose on-commit hooks (the cache bumps) run when it ends, as after a commit."""

    @contextmanager
    def block() -> Iterator[None]:
        with django_capture_on_commit_callbacks(execute=True):
            yield

    return block


URL = "/api/search/"


def search(client: APIClient, **params: Any) -> dict[str, Any]:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return response.json()


def ids(body: dict[str, Any]) -> list[int]:
    return [hit["id"] for hit in body["results"]]


def test_response_shape(api_client: APIClient) -> None:
    category = CategoryFactory(name="Audio")
    product = ProductFactory(
        name="Studio Headphones",
        description="Closed-back headphones for mixing.",
        price=Decimal("129.90"),
        stock_quantity=3,
        category=category,
    )
    body = search(api_client, q="headphones")
    assert body["query"] == "headphones"
    assert body["match"] == "full_text"
    assert body["count"] == 1
    assert body["count_capped"] is False
    assert (body["page"], body["page_size"]) == (1, 20)
    assert (body["next"], body["previous"]) == (None, None)
    assert body["suggestions"] == []
    assert body["corrected_query"] is None
    [hit] = body["results"]
    assert hit["id"] == product.pk
    assert hit["name"] == "Studio Headphones"
    assert hit["price"] == "129.90"
    assert hit["rating_average"] is None
    assert hit["review_count"] == 0
    assert hit["in_stock"] is True
    assert hit["category"] == category.pk
    assert hit["category_name"] == "Audio"
    assert hit["name_highlighted"] == "Studio <mark>Headphones</mark>"
    assert "<mark>headphones</mark>" in hit["snippet"]
    assert hit["rank"] > 0


def test_name_match_outranks_description_match(api_client: APIClient) -> None:
    in_description = ProductFactory(
        name="Desk lamp", description="Bright enough to read a telescope manual."
    )
    in_name = ProductFactory(name="Telescope", description="Sees far.")
    body = search(api_client, q="telescope")
    assert ids(body) == [in_name.pk, in_description.pk]
    assert body["results"][0]["rank"] > body["results"][1]["rank"]


def test_category_name_is_searchable(api_client: APIClient) -> None:
    category = CategoryFactory(name="Gardening")
    product = ProductFactory(name="Spade", description="Steel.", category=category)
    ProductFactory(name="Kettle", description="Steel.")
    assert ids(search(api_client, q="gardening")) == [product.pk]


def test_last_word_matches_as_a_prefix(api_client: APIClient) -> None:
    product = ProductFactory(name="Wireless headphones", description="")
    ProductFactory(name="Wireless mouse", description="")
    body = search(api_client, q="wireless headph")
    assert (body["match"], ids(body)) == ("full_text", [product.pk])
    assert body["results"][0]["name_highlighted"] == "<mark>Wireless</mark> <mark>headphones</mark>"


def test_every_word_must_match(api_client: APIClient) -> None:
    both = ProductFactory(name="Red wool scarf", description="")
    ProductFactory(name="Red cotton shirt", description="")
    ProductFactory(name="Blue wool hat", description="")
    assert ids(search(api_client, q="red wool")) == [both.pk]


def test_filters(api_client: APIClient) -> None:
    root = make_category("Outdoor")
    child = make_category("Tents", parent=root)
    other = make_category("Indoor")
    cheap = ProductFactory(name="Camping stove", price=Decimal("20.00"), category=child)
    dear = ProductFactory(
        name="Camping tent", price=Decimal("300.00"), category=root, stock_quantity=0
    )
    elsewhere = ProductFactory(name="Camping chair", price=Decimal("50.00"), category=other)

    assert set(ids(search(api_client, q="camping", category=root.pk))) == {cheap.pk, dear.pk}
    assert ids(search(api_client, q="camping", category=child.pk)) == [cheap.pk]
    assert set(ids(search(api_client, q="camping", min_price="40"))) == {dear.pk, elsewhere.pk}
    assert set(ids(search(api_client, q="camping", max_price="50.00"))) == {
        cheap.pk,
        elsewhere.pk,
    }
    assert ids(search(api_client, q="camping", in_stock="false")) == [dear.pk]
    assert set(ids(search(api_client, q="camping", in_stock="true"))) == {
        cheap.pk,
        elsewhere.pk,
    }


def test_unknown_category_is_a_400(api_client: APIClient) -> None:
    response = api_client.get(URL, {"q": "anything", "category": 999_999})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_index_follows_product_updates_and_deletes(
    api_client: APIClient, committed: Committed
) -> None:
    product = ProductFactory(name="Espresso machine", description="Makes coffee.")
    assert ids(search(api_client, q="espresso")) == [product.pk]  # cached now
    with committed():
        catalog_services.product_update(product=product, name="Grinder", description="Burrs.")
    assert ids(search(api_client, q="espresso")) == []
    assert ids(search(api_client, q="grinder")) == [product.pk]
    assert ids(search(api_client, q="burrs")) == [product.pk]

    moved_to = CategoryFactory(name="Kitchen")
    with committed():
        catalog_services.product_update(product=product, category=moved_to)
    assert ids(search(api_client, q="kitchen")) == [product.pk]

    with committed():
        catalog_services.product_delete(product=product)
    assert ids(search(api_client, q="grinder")) == []


def test_index_follows_category_rename(api_client: APIClient, committed: Committed) -> None:
    category = CategoryFactory(name="Footwear")
    product = ProductFactory(name="Trail runner", description="", category=category)
    assert ids(search(api_client, q="footwear")) == [product.pk]

    with committed():
        catalog_services.category_update(category=category, name="Shoes")
    assert ids(search(api_client, q="footwear")) == []
    body = search(api_client, q="shoes")
    assert ids(body) == [product.pk]
    assert body["results"][0]["category_name"] == "Shoes"


def test_bulk_updates_reach_the_index(api_client: APIClient, committed: Committed) -> None:
    product = ProductFactory(name="Umbrella", description="")
    assert ids(search(api_client, q="umbrella")) == [product.pk]
    # A bulk write invalidates the whole catalog, as imports do (docs/caching.md).
    with committed():
        Product.objects.filter(pk=product.pk).update(name="Parasol")
        catalog_services.catalog_cache_invalidate()
    assert ids(search(api_client, q="umbrella")) == []
    assert ids(search(api_client, q="parasol")) == [product.pk]


@pytest.mark.parametrize(
    "query",
    [
        "!!!",
        "'; DROP TABLE catalog_product; --",
        '"unbalanced',
        "-",
        "or",
        "a & b | !c <-> d:*",
        "SELECT * FROM catalog_product WHERE 1=1",
        "%_\\",
        "\u0301\u200b",
        "((()))",
        "laptpo' OR '1'='1",
        "x" * 200,
        "zzqx " * 40,
        "a " * 100,
        "ünïcödé wörds 42",
        "%lapt_",
    ],
)
def test_odd_queries_answer_200(api_client: APIClient, query: str) -> None:
    ProductFactory(name="Catalog product", description="")
    body = search(api_client, q=query)
    assert isinstance(body["results"], list)
    assert Product.objects.filter(name="Catalog product").exists()


def test_sql_fragment_finds_words_not_runs_sql(api_client: APIClient) -> None:
    product = ProductFactory(name="Drop-leaf table", description="")
    assert ids(search(api_client, q="'; DROP TABLE")) == [product.pk]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 1000}, "q"),
        ({"q": "a\x00b"}, "q"),
        ({"q": "lamp", "page": "0"}, "page"),
        ({"q": "lamp", "page": "abc"}, "page"),
        ({"q": "lamp", "page_size": str(PAGE_SIZE_MAX + 1)}, "page_size"),
        ({"q": "lamp", "min_price": "-1"}, "min_price"),
        ({"q": "lamp", "min_price": "5", "max_price": "1"}, "max_price"),
        ({"q": "lamp", "in_stock": "maybe"}, "in_stock"),
        ({"q": "lamp", "category": "0"}, "category"),
    ],
)
def test_bad_parameters_are_a_clear_400(
    api_client: APIClient, params: dict[str, str], field: str
) -> None:
    response = api_client.get(URL, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]


def test_pages_are_bounded(api_client: APIClient) -> None:
    ProductFactory.create_batch(5, name="Pillow", description="")
    first = search(api_client, q="pillow", page_size=2)
    assert (first["count"], len(first["results"]), first["previous"]) == (5, 2, None)
    assert first["next"] is not None
    second = api_client.get(first["next"]).json()
    third = api_client.get(second["next"]).json()
    assert second["page"] == 2
    assert len(third["results"]) == 1
    assert third["next"] is None
    seen = ids(first) + ids(second) + ids(third)
    assert sorted(seen) == sorted(Product.objects.values_list("pk", flat=True))

    past_the_end = search(api_client, q="pillow", page_size=2, page=4)
    assert past_the_end["results"] == []

    last_page = RESULT_WINDOW // 50
    assert search(api_client, q="pillow", page_size=50, page=last_page)["results"] == []
    response = api_client.get(URL, {"q": "pillow", "page_size": 50, "page": last_page + 1})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "search_page_out_of_range"


def test_query_count_is_pinned(api_client: APIClient, django_assert_num_queries: Any) -> None:
    ProductFactory.create_batch(4, name="Notebook", description="")
    # PostgreSQL: the name lexemes the word being typed may be, the ranked page
    # with highlights and the capped count in one query, then the products with
    # their categories. SQLite counts separately.
    expected = 3
    with django_assert_num_queries(expected):
        body = search(api_client, q="notebook")
    assert len(body["results"]) == 4


def test_typo_finds_close_names(api_client: APIClient) -> None:
    product = ProductFactory(name="Headphones", description="")
    ProductFactory(name="Toaster", description="")
    body = search(api_client, q="headphnoes")
    assert body["match"] == "fuzzy"
    assert ids(body) == [product.pk]
    # PostgreSQL searched the corrected word; SQLite matched names directly.
    expected = "headphones" if connection.vendor == "postgresql" else None
    assert body["corrected_query"] == expected


def test_nothing_found_offers_similar_names(api_client: APIClient) -> None:
    category = CategoryFactory(name="Kitchen")
    saucepan = ProductFactory(name="Saucepan", description="", category=category)
    other = CategoryFactory(name="Garden")
    # Nothing in the garden matches, but the kitchen has a close name. The
    # suggestion is a query that finds it (PostgreSQL: the corrected spelling;
    # SQLite: the product's name).
    body = search(api_client, q="saucepna", category=other.pk)
    assert body["results"] == []
    assert body["count"] == 0
    assert [suggestion.lower() for suggestion in body["suggestions"]] == ["saucepan"]
    assert ids(search(api_client, q=body["suggestions"][0])) == [saucepan.pk]


def test_schema_documents_search(api_client: APIClient) -> None:
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    operation = schema["paths"]["/api/search/"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"q", "category", "min_price", "max_price", "in_stock", "page", "page_size"} <= names
    response_schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    results = schema["components"]["schemas"][response_schema["$ref"].rsplit("/", 1)[-1]]
    assert results["properties"]["corrected_query"]["nullable"] is True
    assert "corrected_query" in results["required"]


def test_every_page_reports_the_same_count_even_past_the_last_match(
    api_client: APIClient,
) -> None:
    # On PostgreSQL the count comes with the page's rows; a page with no rows
    # (past the last match) has to count on its own.
    products = ProductFactory.create_batch(5, name="Notebook", description="")
    pages = [search(api_client, q="notebook", page=page, page_size=2) for page in (1, 2, 3, 4)]
    assert [body["count"] for body in pages] == [5, 5, 5, 5]
    assert [len(body["results"]) for body in pages] == [2, 2, 1, 0]
    assert sorted(hit for body in pages for hit in ids(body)) == sorted(p.pk for p in products)
    assert pages[3]["match"] == "full_text"


def test_a_category_filter_keeps_the_whole_subtree_in_rank_order(api_client: APIClient) -> None:
    root = CategoryFactory(name="Office")
    child = CategoryFactory(name="Paper", parent=root)
    grandchild = CategoryFactory(name="Pads", parent=child)
    elsewhere = CategoryFactory(name="Garden")
    in_name = ProductFactory(name="Notebook", description="", category=grandchild)
    in_text = ProductFactory(name="Folder", description="holds a notebook", category=root)
    ProductFactory(name="Notebook", description="", category=elsewhere)
    body = search(api_client, q="notebook", category=root.pk)
    assert ids(body) == [in_name.pk, in_text.pk]
    assert body["count"] == 2


def test_the_hit_list_renders_what_drf_renders_field_by_field(api_client: APIClient) -> None:
    from emporium.search.selectors import product_search
    from emporium.search.serializers import SearchHitSerializer

    speakers_catalog()
    hits = product_search(query="speaker").hits
    assert len(hits) == 2
    fast = SearchHitSerializer(hits, many=True).data
    generic = [dict(SearchHitSerializer(hit).data) for hit in hits]
    assert fast == generic
    assert [type(value) for row in fast for value in row.values()] == [
        type(value) for row in generic for value in row.values()
    ]
    assert {row["rating_average"] for row in fast} == {None, "4.33"}
