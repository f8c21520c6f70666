"""``GET /api/search/`` and ``GET /api/search/suggest/``: thin views over the selectors.

Both answer from the catalog's versioned response cache (``search.caching``,
docs/caching.md): parameters are validated first, so a 400 is never stored,
and an error raised while searching (an unknown category, a page past the
window) propagates without storing anything. A hit costs no query and no
rendering, and ``If-None-Match`` is answered 304.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from emporium.catalog import caching as catalog_caching
from emporium.search import caching
from emporium.search.selectors import SearchResults, product_search, search_suggest
from emporium.search.serializers import (
    SearchParametersSerializer,
    SearchResultsSerializer,
    SuggestionsSerializer,
    SuggestParametersSerializer,
)

_CONDITIONAL_PARAMETERS = [
    OpenApiParameter(
        "If-None-Match",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="An ETag from an earlier response; 304 with no body if it is still current.",
    ),
]
_NOT_MODIFIED = OpenApiResponse(description="Not modified: the client's copy is current.")


def _page_link(base_uri: str, params: dict[str, Any], page: int) -> str:
    query = {key: value for key, value in params.items() if value is not None}
    query["page"] = page
    return f"{base_uri}?{urlencode(sorted(query.items()))}"


class SearchView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="search_products",
        summary="Full-text product search",
        description=(
            "Ranked product search over name (weighted highest), description and category "
            "name, with highlighted matches, the catalog filters and bounded pages "
            "(the first 1000 results). PostgreSQL full-text search with trigram typo "
            "tolerance in production; SQLite FTS5 in the embedded profile. Answers come "
            "from the catalog's response cache, invalidated by every product, price, stock "
            "and category change."
        ),
        parameters=[SearchParametersSerializer, *_CONDITIONAL_PARAMETERS],
        responses={
            200: SearchResultsSerializer,
            304: _NOT_MODIFIED,
            400: OpenApiResponse(
                description="Missing or invalid parameters, unknown category, or a page "
                "past the result window."
            ),
        },
        tags=["search"],
    )
    def get(self, request: Request) -> HttpResponse:
        parameters = SearchParametersSerializer(data=request.query_params)
        parameters.is_valid(raise_exception=True)
        data = parameters.validated_data
        arguments = parameters.search_arguments()
        base_uri = request.build_absolute_uri(request.path)

        def body() -> Any:
            results: SearchResults = product_search(**arguments)
            link_params = {
                "q": results.query,
                "category": data.get("category"),
                "min_price": data.get("min_price"),
                "max_price": data.get("max_price"),
                "in_stock": None if data["in_stock"] is None else str(data["in_stock"]).lower(),
                "page_size": data["page_size"],
            }
            links = {
                "next": _page_link(base_uri, link_params, results.page + 1)
                if results.has_next
                else None,
                "previous": _page_link(base_uri, link_params, results.page - 1)
                if results.has_previous
                else None,
            }
            return SearchResultsSerializer(results, context=links).data

        return catalog_caching.cached_json(
            request,
            key=caching.search_key(caching.RESULTS, base_uri=base_uri, arguments=arguments),
            namespaces=caching.results_namespaces(),
            data=body,
        )


class SuggestView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="search_suggest",
        summary="Autocomplete: completions of a partly typed query",
        description=(
            "For the words typed so far, the most common product-name words that complete "
            "the last one (tolerating a typo after its first letters), each as a whole "
            "query, and the categories whose name has a word starting with it. Cached like "
            "the search results; meant to be asked on every keystroke."
        ),
        parameters=[SuggestParametersSerializer, *_CONDITIONAL_PARAMETERS],
        responses={
            200: SuggestionsSerializer,
            304: _NOT_MODIFIED,
            400: OpenApiResponse(description="A missing, blank or too long `q`."),
        },
        tags=["search"],
    )
    def get(self, request: Request) -> HttpResponse:
        parameters = SuggestParametersSerializer(data=request.query_params)
        parameters.is_valid(raise_exception=True)
        prefix = parameters.prefix()
        return catalog_caching.cached_json(
            request,
            key=caching.suggest_key(prefix),
            namespaces=caching.suggest_namespaces(),
            lagging=caching.suggest_lagging_namespaces(),
            data=lambda: SuggestionsSerializer(search_suggest(prefix=prefix)).data,
        )
