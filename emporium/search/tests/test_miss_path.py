"""The uncached search's shortcuts give what DRF and the ORM give the long way.

The parameters are validated on fields bound once per serializer class, the
results rendered from a plan derived from their serializer, the page's
products loaded by a statement derived from ``HIT_FIELDS`` and the highlights
marked up slice by slice: each is compared here with the generic path it
replaces, on the inputs where they could differ.
"""

from __future__ import annotations

import html
import json
import random
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient
from rest_framework.utils.serializer_helpers import BindingDict

from emporium.catalog.models import Product
from emporium.core.tests.factories import CategoryFactory, ProductFactory, make_category
from emporium.search.highlighting import MARK_END, MARK_START, highlight_markup
from emporium.search.selectors import HIT_FIELDS, hit_products, product_search
from emporium.search.serializers import (
    FieldsBoundOnce,
    SearchParametersSerializer,
    SearchResultsSerializer,
    representation_plan,
)
from emporium.search.tests.support import speakers_catalog

pytestmark = pytest.mark.django_db


class FreshFieldsParameters(SearchParametersSerializer):
    """The same declarations with DRF's own per-instance copy of the fields."""

    @property
    def fields(self) -> BindingDict:
        fields = BindingDict(self)
        for name, field in self.get_fields().items():
            fields[name] = field
        return fields


PARAMETER_CASES: list[dict[str, str]] = [
    {"q": "lamp"},
    {"q": "  red   lamp  ", "page": "2", "page_size": "50"},
    {},
    {"q": ""},
    {"q": "   "},
    {"q": "x" * 201},
    {"q": "lamp", "category": "0"},
    {"q": "lamp", "category": "abc"},
    {"q": "lamp", "category": str(2**63)},
    {"q": "lamp", "category": "7"},
    {"q": "lamp", "min_price": "-1"},
    {"q": "lamp", "min_price": "1e3"},
    {"q": "lamp", "min_price": "12.345"},
    {"q": "lamp", "min_price": "10", "max_price": "9.99"},
    {"q": "lamp", "min_price": "10", "max_price": "10"},
    {"q": "lamp", "in_stock": "maybe"},
    {"q": "lamp", "in_stock": "true"},
    {"q": "lamp", "in_stock": "false"},
    {"q": "lamp", "in_stock": "null"},
    {"q": "lamp", "page": "0"},
    {"q": "lamp", "page": "10001"},
    {"q": "lamp", "page": "1.5"},
    {"q": "lamp", "page_size": "51"},
    {"q": "", "page": "x", "page_size": "0", "min_price": "a", "category": "-3"},
]


@pytest.mark.parametrize("raw", PARAMETER_CASES)
def test_parameters_validate_as_with_fresh_fields(raw: dict[str, str]) -> None:
    # Once as a plain dict (the page) and once as a QueryDict (the API).
    from django.http import QueryDict

    query_dict = QueryDict(mutable=True)
    for key, value in raw.items():
        query_dict[key] = value
    for data in (raw, query_dict):
        shared = SearchParametersSerializer(data=data)
        fresh = FreshFieldsParameters(data=data)
        assert shared.is_valid() == fresh.is_valid()
        assert shared.errors == fresh.errors
        if fresh.is_valid():
            assert shared.validated_data == fresh.validated_data
            assert shared.search_arguments() == fresh.search_arguments()


def test_shared_fields_keep_nothing_between_requests() -> None:
    # An invalid request, then a valid one, then the invalid one again: the
    # second sees none of the first's errors, the third all of them.
    bad = {"q": "", "page": "0", "min_price": "-1"}
    first = SearchParametersSerializer(data=bad)
    assert not first.is_valid()
    good = SearchParametersSerializer(data={"q": "lamp"})
    assert good.is_valid(), good.errors
    assert good.validated_data["page"] == 1
    again = SearchParametersSerializer(data=bad)
    assert not again.is_valid()
    assert again.errors == first.errors
    assert set(again.errors) == {"q", "page", "min_price"}
    assert SearchParametersSerializer().fields is good.fields


def test_fields_that_read_their_serializer_are_refused() -> None:
    class WithMethod(FieldsBoundOnce):
        q = serializers.CharField()
        echo = serializers.SerializerMethodField()

    with pytest.raises(TypeError, match="echo"):
        WithMethod(data={"q": "x"}).is_valid()
    with pytest.raises(TypeError, match="partial"):
        SearchParametersSerializer(data={"q": "x"}, partial=True).is_valid()


def test_bad_parameters_answer_the_one_error_shape(api_client: APIClient) -> None:
    for _ in range(2):  # the shared fields, built by the first request, give the same
        response = api_client.get("/api/search/", {"q": "lamp", "page": "0", "min_price": "x"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert set(error["details"]) == {"page", "min_price"}


def _generic_rendering(results: Any, context: dict[str, Any]) -> bytes:
    serializer = SearchResultsSerializer(results, context=context)
    data = serializers.Serializer.to_representation(serializer, results)
    data["results"] = [
        serializers.Serializer.to_representation(serializer.fields["results"].child, hit)
        for hit in results.hits
    ]
    return bytes(JSONRenderer().render(data))


def test_the_results_render_what_drf_renders_field_by_field() -> None:
    speakers_catalog()
    ProductFactory(name="Saucepan", description="")
    links = {"next": "http://testserver/api/search/?page=2&q=speaker", "previous": None}
    for results in (
        product_search(query="speaker", page_size=1),
        product_search(query="speakre"),  # corrected (PostgreSQL) or fuzzy names (SQLite)
        product_search(query="zzzz qqqq"),  # nothing: no hits, maybe suggestions
    ):
        planned = bytes(JSONRenderer().render(SearchResultsSerializer(results, context=links).data))
        assert planned == _generic_rendering(results, links)
    assert json.loads(planned)["results"] == []


def test_the_results_plan_refuses_a_field_it_cannot_render() -> None:
    class Nested(serializers.Serializer[Any]):
        inner = serializers.CharField()

    class WithNested(SearchResultsSerializer):
        first = Nested(source="hits.0")

    with pytest.raises(TypeError, match="first"):
        representation_plan(WithNested)


def test_hit_products_are_what_the_orm_loads() -> None:
    category = CategoryFactory(name="Lamps")
    products = [
        ProductFactory(name="Desk lamp", price=Decimal("19.90"), category=category),
        ProductFactory(name="Floor lamp", price=Decimal("1234567.50"), stock_quantity=0),
    ]
    Product.objects.filter(pk=products[1].pk).update(review_count=3, rating_total=13)
    wanted = [product.pk for product in products] + [10**9]  # one id no product has
    loaded = hit_products(wanted)
    expected = Product.objects.select_related("category").only(*HIT_FIELDS).in_bulk(wanted)
    assert sorted(loaded) == sorted(expected) == sorted(wanted[:2])
    for pk, product in expected.items():
        mine = loaded[pk]
        assert mine.get_deferred_fields() == product.get_deferred_fields()
        for name in HIT_FIELDS:
            path = name.split("__")
            value, theirs = mine, product
            for attribute in path:
                value, theirs = getattr(value, attribute), getattr(theirs, attribute)
            assert (value, type(value)) == (theirs, type(theirs)), name
        assert (mine.rating_average, mine.in_stock) == (product.rating_average, product.in_stock)
        assert mine._state.db == product._state.db
        assert not mine._state.adding
    assert hit_products([]) == {}


def test_hit_products_read_the_category_in_the_same_statement(
    django_assert_num_queries: Any,
) -> None:
    product = ProductFactory(name="Desk lamp")
    with django_assert_num_queries(1):
        loaded = hit_products([product.pk])
        assert loaded[product.pk].category.name == product.category.name
    if connection.vendor == "postgresql":  # the statement derived from HIT_FIELDS
        with django_assert_num_queries(1) as captured:
            hit_products([product.pk])
        sql = captured.captured_queries[0]["sql"]
        assert "catalog_category" in sql
        assert "description" not in sql


def _markup_by_character(text: str) -> str:
    """The reference: every character of the escaped text in turn."""
    parts: list[str] = []
    open_mark = False
    for character in html.escape(text, quote=True):
        if character == MARK_START:
            if not open_mark:
                parts.append("<mark>")
                open_mark = True
        elif character == MARK_END:
            if open_mark:
                parts.append("</mark>")
                open_mark = False
        else:
            parts.append(character)
    if open_mark:
        parts.append("</mark>")
    return "".join(parts)


def test_highlight_markup_matches_the_character_walk() -> None:
    rng = random.Random(5)
    alphabet = ["a", "b", " ", "&", "<", ">", '"', "'", "Ω", MARK_START, MARK_END]
    texts = ["", MARK_START, MARK_END, f"{MARK_END}{MARK_START}", f"{MARK_START}{MARK_START}x"]
    texts += ["".join(rng.choices(alphabet, k=rng.randint(1, 40))) for _ in range(2000)]
    for text in texts:
        assert highlight_markup(text) == _markup_by_character(text), repr(text)


def test_the_page_lists_every_category_escaped_with_the_chosen_one_selected(
    client: Any,
) -> None:
    parent = make_category("Tools & <Hardware>")
    child = make_category("\"Drills\" 'n' bits", parent=parent)
    ProductFactory(name="Cordless drill", description="", category=child)
    html_text = client.get("/search/", {"q": "drill", "category": str(child.pk)}).content.decode()
    assert (
        f'<option value="">All categories</option>\n      \n      '
        f'<option value="{parent.pk}">Tools &amp; &lt;Hardware&gt;</option>'
    ) in html_text
    assert (
        f'<option value="{child.pk}" selected>— &quot;Drills&quot; &#x27;n&#x27; bits</option>'
        in html_text
    )
    assert html_text.count(" selected>") == 1
    # A value that is not a category's own spelling selects nothing, as before.
    other = client.get("/search/", {"q": "drill", "category": f"0{child.pk}"}).content.decode()
    assert " selected>" not in other.split('id="in_stock"')[0]
