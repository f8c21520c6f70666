from __future__ import annotations

from typing import Any, ClassVar

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.utils.serializer_helpers import BindingDict

from emporium.core.query_fields import AmountQueryField
from emporium.search.selectors import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    QUERY_MAX_LENGTH,
    SUGGEST_MAX_LENGTH,
    normalized_query,
)


class FieldsBoundOnce(serializers.Serializer[Any]):
    """A serializer whose declared fields are copied and bound once per class.

    DRF deep-copies every declared field for each instance, so that one
    instance may alter its fields; for a search's parameters that copy was
    most of their validation. These serializers never alter their fields, and
    validating keeps no state in a field, so all instances share one set bound
    to a prototype with no data: validation runs DRF's own code on it, with the
    same errors. A field reads of its parent only ``partial`` (never set here)
    and the context (the prototype's, empty), so fields that read the context
    or call a method of the serializer are refused, and so is ``partial``.
    """

    _bound: ClassVar[dict[type[Any], BindingDict]] = {}
    _REFUSED = (
        serializers.SerializerMethodField,
        serializers.HiddenField,
        serializers.BaseSerializer,
        serializers.RelatedField,
    )

    @property
    def fields(self) -> BindingDict:
        if self.partial:
            raise TypeError(f"{type(self).__name__} shares its fields; partial is not supported")
        cls = type(self)
        fields = FieldsBoundOnce._bound.get(cls)
        if fields is None:
            prototype = cls()
            fields = BindingDict(prototype)
            for name, field in prototype.get_fields().items():
                if isinstance(field, self._REFUSED):
                    raise TypeError(f"{cls.__name__}.{name} cannot be shared between instances")
                fields[name] = field
            FieldsBoundOnce._bound[cls] = fields
        return fields


class SearchParametersSerializer(FieldsBoundOnce):
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


# Fields whose representation depends only on the value they read: a serializer
# may render them from a plan made once (``representation_plan``).
_PLAIN_FIELDS = (
    serializers.IntegerField,
    serializers.CharField,
    serializers.DecimalField,
    serializers.BooleanField,
    serializers.FloatField,
    serializers.ChoiceField,
)

# One step of a plan: the key, the source attributes read, the field, and the
# name of the serializer's method for a SerializerMethodField (None otherwise).
PlanStep = tuple[str, list[str], Any, str | None]
_plans: dict[type[Any], list[PlanStep]] = {}


def _plain(field: Any) -> bool:
    if isinstance(field, serializers.ListField):
        return _plain(field.child)
    return isinstance(field, (*_PLAIN_FIELDS, HitListSerializer))


def representation_plan(serializer_class: type[Any]) -> list[PlanStep]:
    """The readable fields of ``serializer_class`` as steps, derived once per class.

    Only fields whose representation depends on nothing but the value read
    qualify (plain fields, lists of them, a planned hit list) and methods of
    the serializer (``SerializerMethodField``); any other field makes the plan
    refuse to be built, so a field added later cannot render differently here.
    """
    plan = _plans.get(serializer_class)
    if plan is None:
        plan = []
        for field in serializer_class()._readable_fields:
            if isinstance(field, serializers.SerializerMethodField):
                plan.append((str(field.field_name), [], field, str(field.method_name)))
            elif _plain(field) and field.source != "*":
                plan.append((str(field.field_name), list(field.source_attrs), field, None))
            else:
                raise TypeError(f"{serializer_class.__name__}.{field.field_name} is not plain")
        _plans[serializer_class] = plan
    return plan


def render_planned(plan: list[PlanStep], instance: Any, serializer: Any) -> dict[str, Any]:
    """What DRF's ``Serializer.to_representation`` does per field, from a plan.

    Read the source attributes (None stays None), else the field's
    ``to_representation``; a method field calls ``serializer``'s method with
    the instance. No field is copied and nothing is walked generically.
    """
    row: dict[str, Any] = {}
    for name, attributes, field, method in plan:
        if method is not None:
            row[name] = getattr(serializer, method)(instance)
            continue
        value = instance
        for attribute in attributes:
            value = getattr(value, attribute)
            if value is None:
                break
        row[name] = None if value is None else field.to_representation(value)
    return row


class HitListSerializer(serializers.ListSerializer[Any]):
    """A page of hits, each rendered from the plan of the child's declared fields.

    On a page of 20, DRF's generic walk of the copied fields for each hit was
    most of the rendering.
    """

    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        plan = representation_plan(type(self.child))
        return [render_planned(plan, hit, self.child) for hit in data]


# A serializer that renders its instance from its class's plan: DRF would
# deep-copy every declared field (a nested list serializer and its child
# included) for each instance it renders; the plan was derived once. (No
# docstring: drf-spectacular would describe every subclass's component with it.)
class PlannedRepresentation(serializers.Serializer[Any]):
    def to_representation(self, instance: Any) -> dict[str, Any]:
        return render_planned(representation_plan(type(self)), instance, self)


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


class SearchResultsSerializer(PlannedRepresentation):
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
