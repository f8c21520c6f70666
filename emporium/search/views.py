"""The server-rendered search page and product page (local assets only)."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlencode

from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from emporium.catalog import caching as catalog_caching
from emporium.catalog.selectors import category_list, product_detail_queryset
from emporium.core.cache import conditional_response, versioned_fetch
from emporium.core.errors import InvalidInput
from emporium.search import caching
from emporium.search.selectors import SearchResults, product_search
from emporium.search.serializers import SearchParametersSerializer

_TEMPLATE = "search/search.html"
# The autocomplete, built by `make frontend` from frontend/src (not committed, ADR 0015).
BUNDLE = "search/build/search.js"
_FILTER_FIELDS = ("q", "category", "min_price", "max_price", "in_stock", "page_size")


def _error_messages(errors: dict[str, Any]) -> list[str]:
    messages = []
    for field, problems in errors.items():
        for problem in problems if isinstance(problems, list) else [problems]:
            messages.append(f"{field}: {problem}")
    return messages


class _PageError(Exception):
    """Raised while building a page that answers 400 (never cached)."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(messages)
        self.messages = messages


def _category_options(selected: str) -> SafeString:
    """The category filter's ``<option>`` elements, the one chosen marked ``selected``.

    The options of every category are one cached fragment under the
    categories' namespace (a category created, renamed, moved or deleted
    rebuilds it), so a page rendered afresh reads them in one cache look-up
    instead of 1,110 rows and as many strings (~1.2 ms of CPU and a query).
    The chosen one is marked in a copy; a value that is no category's own
    spelling matches no option and selects nothing.
    """
    lookup = versioned_fetch(
        key=caching.CATEGORY_OPTIONS,
        namespaces=caching.category_options_namespaces(),
        compute=lambda: _category_options_markup().encode(),
        policy=catalog_caching.cache_policy(),
    )
    markup = lookup.entry.body.decode()
    if selected:
        markup = markup.replace(
            f'<option value="{selected}">', f'<option value="{selected}" selected>', 1
        )
    # Each label is escaped in the fragment; the values are integers.
    return mark_safe(markup)  # noqa: S308 - labels escaped in _category_options_markup


def _category_options_markup() -> str:
    """Every category as an ``<option>``, none selected.

    Written here rather than looped over in the template: on a catalog of
    1,110 categories that loop (and loading the categories as models) was
    ~90 % of an uncached page, ~20 ms of CPU. Labels are escaped as the
    template's autoescaping escapes them.
    """
    options = []
    for pk, depth, name in category_list().values_list("pk", "depth", "name"):
        label = "— " * depth + html.escape(name, quote=True)
        options.append(f'<option value="{pk}">{label}</option>')
    return "".join(f"\n      {option}\n      " for option in options)


def _page_context(raw: dict[str, str]) -> dict[str, Any]:
    context: dict[str, Any] = {
        "form": {key: raw.get(key, "") for key in _FILTER_FIELDS},
        "category_options": _category_options(raw.get("category", "")),
        "errors": [],
        "results": None,
        "bundle": BUNDLE if finders.find(BUNDLE) is not None else None,
    }
    if not raw.get("q", "").strip():
        return context
    parameters = SearchParametersSerializer(data=raw)
    if not parameters.is_valid():
        raise _PageError(_error_messages(parameters.errors))
    try:
        results: SearchResults = product_search(**parameters.search_arguments())
    except InvalidInput as error:
        raise _PageError([error.message]) from error
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
        {"name": name, "url": "?" + urlencode({"q": name})} for name in results.suggestions
    ]
    return context


@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    """The page, from the catalog's response cache; a page with errors is rendered afresh.

    The page shows nothing per user or per session (no form token: it is a GET
    form), so it is rendered without the request and its bytes are shared.
    """
    raw = {key: request.GET[key] for key in _FILTER_FIELDS if request.GET.get(key, "") != ""}
    if "page" in request.GET:
        raw["page"] = request.GET["page"]
    try:
        lookup = versioned_fetch(
            key=caching.search_key(
                caching.PAGE, base_uri=request.build_absolute_uri(request.path), arguments=raw
            ),
            namespaces=caching.page_namespaces(),
            compute=lambda: render_to_string(_TEMPLATE, _page_context(raw)).encode(),
            policy=catalog_caching.cache_policy(),
        )
    except _PageError as error:
        context = _page_context({key: value for key, value in raw.items() if key != "q"})
        context["form"] = {key: raw.get(key, "") for key in _FILTER_FIELDS}
        context["errors"] = error.messages
        return render(request, _TEMPLATE, context, status=400)
    return conditional_response(
        request,
        lookup.entry,
        content_type="text/html; charset=utf-8",
        cache_control=catalog_caching.cache_control(),
    )


@require_GET
def product_page(request: HttpRequest, product_id: int) -> HttpResponse:
    product = get_object_or_404(product_detail_queryset(), pk=product_id)
    return render(request, "search/product.html", {"product": product})
