"""One parser for the product list's parameters: its plain lane reads as the serializer does."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.http import QueryDict
from rest_framework.exceptions import ValidationError

from emporium.catalog import list_query
from emporium.catalog.list_query import ListQuery, product_list_filters, product_list_query
from emporium.catalog.serializers import ProductFilterSerializer
from emporium.core.errors import InvalidInput
from emporium.core.pagination import InvalidCursor

QUERIES = [
    "",
    "category=12",
    "category=012",
    "category=1.0",
    "category= 7",
    "category=",
    "category=0",
    "category=999999999999999999",
    "category=9223372036854775808",
    "min_price=12.5",
    "min_price=12.50",
    "min_price=0",
    "min_price=007",
    "min_price=1e3",
    "min_price=-1",
    "max_price=9999999999.99",
    "max_price=99999999999",
    "min_price=5&max_price=1",
    "min_price=1&max_price=1",
    "in_stock=true",
    "in_stock=false",
    "in_stock=True",
    "in_stock=1",
    "in_stock=",
    "in_stock=maybe",
    "ordering=price",
    "ordering=-name",
    "ordering=",
    "ordering=stock",
    "q=lamp",
    "q=",
    "category=3&category=4",
    "ordering=price&min_price=1&in_stock=true&category=9",
]


def _serializer_result(params: QueryDict) -> dict[str, object] | None:
    serializer = ProductFilterSerializer(data=params)
    return dict(serializer.validated_data) if serializer.is_valid() else None


@pytest.mark.parametrize("query", QUERIES)
def test_the_filters_are_the_serializers_whichever_lane_reads_them(query: str) -> None:
    params = QueryDict(query)
    expected = _serializer_result(params)
    if expected is None:
        with pytest.raises(ValidationError):
            product_list_filters(params)
        return
    found = product_list_filters(params)
    assert {k: v for k, v in found.items() if v is not None} == {
        k: v for k, v in expected.items() if v is not None
    }


@pytest.mark.parametrize(
    "query", ["category=12", "min_price=12.50&max_price=20", "in_stock=false&ordering=name"]
)
def test_plain_spellings_skip_the_serializer(monkeypatch: pytest.MonkeyPatch, query: str) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the serializer was built")

    monkeypatch.setattr(list_query, "ProductFilterSerializer", refuse)
    assert product_list_filters(QueryDict(query))


def test_a_query_reads_into_one_typed_value() -> None:
    query = product_list_query(
        QueryDict("category=3&min_price=1.5&in_stock=true&ordering=price&page_size=5")
    )
    assert query == ListQuery(
        category_id=3,
        min_price=Decimal("1.50"),
        in_stock=True,
        ordering="price",
        size=5,
    )


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("page_size=0", InvalidInput),
        ("page_size=x", InvalidInput),
        ("cursor=garbage", InvalidCursor),
        ("min_price=x&page_size=0", ValidationError),  # filters are checked first
    ],
)
def test_bad_paging_is_refused(query: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        product_list_query(QueryDict(query))
