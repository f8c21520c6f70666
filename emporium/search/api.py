"""``GET /api/search/``: thin view over ``selectors.product_search``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.search.selectors import SearchResults, product_search
from emporium.search.serializers import SearchParametersSerializer, SearchResultsSerializer


def _page_link(request: Request, params: dict[str, Any], page: int) -> str:
    query = {key: value for key, value in params.items() if value is not None}
    query["page"] = page
    return request.build_absolute_uri(f"{request.path}?{urlencode(sorted(query.items()))}")


class SearchView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="search_products",
        summary="Full-text product search",
        description=(
            "Ranked product search over name (weighted highest), description and category "
            "name, with highlighted matches, the catalog filters and bounded pages "
            "(the first 1000 results). PostgreSQL full-text search with trigram typo "
            "tolerance in production; SQLite FTS5 in the embedded profile."
        ),
        parameters=[SearchParametersSerializer],
        responses={
            200: SearchResultsSerializer,
            400: OpenApiResponse(
                description="Missing or invalid parameters, unknown category, or a page "
                "past the result window."
            ),
        },
        tags=["search"],
    )
    def get(self, request: Request) -> Response:
        parameters = SearchParametersSerializer(data=request.query_params)
        parameters.is_valid(raise_exception=True)
        data = parameters.validated_data
        results: SearchResults = product_search(**parameters.search_arguments())
        link_params = {
            "q": results.query,
            "category": data.get("category"),
            "min_price": data.get("min_price"),
            "max_price": data.get("max_price"),
            "in_stock": None if data["in_stock"] is None else str(data["in_stock"]).lower(),
            "page_size": data["page_size"],
        }
        links = {
            "next": _page_link(request, link_params, results.page + 1)
            if results.has_next
            else None,
            "previous": _page_link(request, link_params, results.page - 1)
            if results.has_previous
            else None,
        }
        return Response(SearchResultsSerializer(results, context=links).data)
