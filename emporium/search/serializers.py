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


# Fields whose representation depends only on the attribute they read: a hit list
# may render them from a plan made once (``HitListSerializer``).
_PLAIN_FIELDS = (
    serializers.IntegerField,
    serializers.CharField,
    serializers.DecimalField,
    serializers.BooleanField,
    serializers.FloatField,
)


class HitListSerializer(serializers.ListSerializer[Any]):
    """A page of hits rendered from a plan derived once from the child's declared fields.

    What DRF's ``Serializer.to_representation`` does per field (read the
    source attributes, None stays None, else the field's ``to_representation``),
    without copying the fields for each request or walking them generically
    for each hit: on a page of 20 that walk was most of the rendering. Only
    plain fields qualify; any other makes the plan refuse to be built.
    """

    _plans: dict[type[Any], list[tuple[str, list[str], Any]]] = {}

    @classmethod
    def plan_of(cls, child_class: type[Any]) -> list[tuple[str, list[str], Any]]:
        plan = cls._plans.get(child_class)
        if plan is None:
            plan = []
            for field in child_class()._readable_fields:
                if not isinstance(field, _PLAIN_FIELDS) or field.source == "*":
                    raise TypeError(f"{child_class.__name__}.{field.field_name} is not plain")
                plan.append((str(field.field_name), list(field.source_attrs), field))
            cls._plans[child_class] = plan
        return plan

    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        plan = self.plan_of(type(self.child))
        rendered = []
        for hit in data:
            row: dict[str, Any] = {}
            for name, attributes, field in plan:
                value = hit
                for attribute in attributes:
                    value = getattr(value, attribute)
                    if value is None:
                        break
                row[name] = None if value is None else field.to_representation(value)
            rendered.append(row)
        return rendered


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

    class Meta:
        list_serializer_class = HitListSerializer


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
