from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from emporium.core.query_fields import AmountQueryField
from emporium.search.selectors import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    QUERY_MAX_LENGTH,
    SUGGEST_MAX_LENGTH,
    normalized_query,
)


class SearchParametersSerializer(serializers.Serializer[Any]):
    """Query parameters of the search endpoint and page."""

    q = serializers.CharField(
        max_length=QUERY_MAX_LENGTH,
        trim_whitespace=True,
        help_text=(
            "Search words in web-search syntax: quoted phrases, `or`, `-word` to exclude. "
            "The last word also matches as a prefix."
        ),
    )
    category = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="A category and its subtree."
    )
    min_price = AmountQueryField(required=False)
    max_price = AmountQueryField(required=False)
    in_stock = serializers.BooleanField(required=False, allow_null=True, default=None)
    page = serializers.IntegerField(required=False, min_value=1, max_value=10_000, default=1)
    page_size = serializers.IntegerField(
        required=False, min_value=1, max_value=PAGE_SIZE_MAX, default=PAGE_SIZE_DEFAULT
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        low, high = attrs.get("min_price"), attrs.get("max_price")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"max_price": ["Must not be below min_price."]})
        return attrs

    def search_arguments(self) -> dict[str, Any]:
        """The validated parameters as ``product_search`` keywords (API and page alike)."""
        data = self.validated_data
        return {
            "query": normalized_query(data["q"]),
            "category_id": data.get("category"),
            "min_price": data.get("min_price"),
            "max_price": data.get("max_price"),
            "in_stock": data["in_stock"],
            "page": data["page"],
            "page_size": data["page_size"],
        }


class SearchHitSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(source="product.id")
    name = serializers.CharField(source="product.name")
    price = serializers.DecimalField(source="product.price", max_digits=12, decimal_places=2)
    rating_average = serializers.DecimalField(
        source="product.rating_average", max_digits=3, decimal_places=2, allow_null=True
    )
    review_count = serializers.IntegerField(source="product.review_count")
    in_stock = serializers.BooleanField(source="product.in_stock")
    category = serializers.IntegerField(source="product.category_id")
    category_name = serializers.CharField(source="product.category.name")
    name_highlighted = serializers.CharField(
        help_text="The name, HTML-escaped, with matches wrapped in <mark>."
    )
    snippet = serializers.CharField(
        help_text="A passage of the description, HTML-escaped, with matches wrapped in <mark>."
    )
    rank = serializers.FloatField(help_text="Relevance; higher is better. Compare within a page.")


class SearchResultsSerializer(serializers.Serializer[Any]):
    query = serializers.CharField()
    match = serializers.ChoiceField(
        choices=["full_text", "fuzzy"],
        help_text="fuzzy: full text found too little, so typo-tolerant matching was used.",
    )
    count = serializers.IntegerField(source="total", help_text="Matches, counted up to 1000.")
    count_capped = serializers.BooleanField(
        source="total_capped", help_text="True when there are more than `count` matches."
    )
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    next = serializers.SerializerMethodField()
    previous = serializers.SerializerMethodField()
    corrected_query = serializers.CharField(
        allow_null=True,
        help_text=(
            "Set when `match` is fuzzy because misspelt words were corrected: the query "
            'whose results these are ("showing results for"). Null otherwise.'
        ),
    )
    suggestions = serializers.ListField(
        child=serializers.CharField(),
        help_text=(
            "When nothing matched, filters ignored: queries to try instead, each finding "
            "products (the query with its spelling corrected, or with a word left out; "
            "close product names on the embedded profile)."
        ),
    )
    results = SearchHitSerializer(source="hits", many=True)

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_next(self, results: object) -> str | None:
        return self.context.get("next")

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_previous(self, results: object) -> str | None:
        return self.context.get("previous")


class SuggestParametersSerializer(serializers.Serializer[Any]):
    """Query parameters of the autocomplete endpoint."""

    q = serializers.CharField(
        max_length=SUGGEST_MAX_LENGTH,
        trim_whitespace=True,
        help_text="What has been typed so far; the last word is completed.",
    )

    def prefix(self) -> str:
        return normalized_query(self.validated_data["q"])


class CategoryMatchSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    name = serializers.CharField()


class SuggestionsSerializer(serializers.Serializer[Any]):
    query = serializers.CharField(help_text="The text completed, whitespace collapsed.")
    completions = serializers.ListField(
        child=serializers.CharField(),
        help_text="Whole queries, most common first: the text with its last word completed.",
    )
    categories = CategoryMatchSerializer(many=True, help_text="Categories it may name.")
