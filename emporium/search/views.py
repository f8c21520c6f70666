"""The server-rendered search page and product page (no scripts, no external assets)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from emporium.catalog.selectors import category_list, product_detail_queryset
from emporium.core.errors import InvalidInput
from emporium.search.selectors import SearchResults, product_search
from emporium.search.serializers import SearchParametersSerializer

_FILTER_FIELDS = ("q", "category", "min_price", "max_price", "in_stock", "page_size")


def _error_messages(errors: dict[str, Any]) -> list[str]:
    messages = []
    for field, problems in errors.items():
        for problem in problems if isinstance(problems, list) else [problems]:
            messages.append(f"{field}: {problem}")
    return messages


@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    raw = {key: request.GET[key] for key in _FILTER_FIELDS if request.GET.get(key, "") != ""}
    if "page" in request.GET:
        raw["page"] = request.GET["page"]
    context: dict[str, Any] = {
        "form": {key: raw.get(key, "") for key in _FILTER_FIELDS},
        "categories": [
            {"value": str(category.pk), "label": "— " * category.depth + category.name}
            for category in category_list()
        ],
        "errors": [],
        "results": None,
    }
    status = 200
    if raw.get("q", "").strip():
        parameters = SearchParametersSerializer(data=raw)
        if parameters.is_valid():
            try:
                results: SearchResults = product_search(**parameters.search_arguments())
            except InvalidInput as error:
                context["errors"] = [error.message]
                status = 400
            else:
                context["results"] = results
                context["first_position"] = (results.page - 1) * results.page_size + 1
                context["hits"] = [
                    {
                        "hit": hit,
                        "name": mark_safe(hit.name_highlighted),  # noqa: S308 - escaped, only <mark>
                        "snippet": mark_safe(hit.snippet),  # noqa: S308 - escaped, only <mark>
                    }
                    for hit in results.hits
                ]
                base = {key: value for key, value in raw.items() if key != "page"}
                if results.has_previous:
                    context["previous_url"] = "?" + urlencode({**base, "page": results.page - 1})
                if results.has_next:
                    context["next_url"] = "?" + urlencode({**base, "page": results.page + 1})
                context["suggestion_links"] = [
                    {"name": name, "url": "?" + urlencode({"q": name})}
                    for name in results.suggestions
                ]
        else:
            context["errors"] = _error_messages(parameters.errors)
            status = 400
    return render(request, "search/search.html", context, status=status)


@require_GET
def product_page(request: HttpRequest, product_id: int) -> HttpResponse:
    product = get_object_or_404(product_detail_queryset(), pk=product_id)
    return render(request, "search/product.html", {"product": product})
