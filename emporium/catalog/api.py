"""Catalog endpoints. Reads are served from the versioned response cache.

A cookie-less anonymous product read is answered in front of Django by the
lean gateway (``fast_path``, ``config.wsgi``), with the same bytes and headers.
Every other read passes through DRF's authentication, permission and content
negotiation, then answers with the stored bytes (or 304) instead of querying
and rendering.
Input is validated before the cache is consulted, and the cache keeps only
what the renderer produced from a successful read, so a 400 or 404 is never
stored.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from emporium.catalog import caching, selectors, services
from emporium.catalog.list_query import LIST_PARAMS, product_list_query
from emporium.catalog.models import Category, Product
from emporium.catalog.representation import product_representation
from emporium.catalog.serializers import (
    CategorySerializer,
    ProductFilterSerializer,
    ProductSerializer,
)
from emporium.core.pagination import KeysetPagination
from emporium.core.permissions import PUBLIC, ActionPermissions, RequiredPermissions

# Documented on every cached read, so clients know they may revalidate.
_CONDITIONAL_PARAMETERS = [
    OpenApiParameter(
        "If-None-Match",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="An ETag from an earlier response; 304 with no body if it is still current.",
    ),
    OpenApiParameter(
        "If-Modified-Since",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="An HTTP date; 304 if nothing changed since (If-None-Match takes precedence).",
    ),
]
_NOT_MODIFIED = OpenApiResponse(description="Not modified: the client's copy is current.")

_PAGE_PARAMS = (KeysetPagination.cursor_query_param, KeysetPagination.page_size_query_param)


def _page_key(view: GenericAPIView[Any], kind: str, params: dict[str, str]) -> str:
    """The key of one list page: what it reads and where its links point.

    The paginator is told to build its links from ``params`` alone, so the
    bytes cannot depend on anything the key leaves out.
    """
    paginator = view.paginator
    assert isinstance(paginator, KeysetPagination)  # noqa: S101 - the project's default
    request = view.request
    paginator.get_page_size(request)  # a malformed page_size is a 400 before any caching
    paginator.link_query = params
    return caching.list_key(kind, base_uri=request.build_absolute_uri(request.path), params=params)


class CategoryViewSet(viewsets.ModelViewSet[Category]):
    """The category tree. Anyone may read it; catalog managers change it."""

    serializer_class = CategorySerializer
    lookup_value_regex = r"\d+"
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {
        "list": PUBLIC,
        "retrieve": PUBLIC,
        "create": ("catalog.add_category",),
        "partial_update": ("catalog.change_category",),
        "destroy": ("catalog.delete_category",),
    }
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Category]:
        return selectors.category_list()

    @extend_schema(
        parameters=_CONDITIONAL_PARAMETERS,
        responses={200: CategorySerializer, 304: _NOT_MODIFIED},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        params = caching.known_params(request.query_params, _PAGE_PARAMS)
        key = _page_key(self, "categories.list", params)

        def page() -> Any:
            rows = self.paginate_queryset(self.get_queryset())
            return self.get_paginated_response(self.get_serializer(rows, many=True).data).data

        return caching.cached_json(
            request, key=key, namespaces=caching.category_namespaces(), data=page
        )

    @extend_schema(
        parameters=_CONDITIONAL_PARAMETERS,
        responses={200: CategorySerializer, 304: _NOT_MODIFIED},
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        category_id = int(self.kwargs[self.lookup_field])
        return caching.cached_json(
            request,
            key=caching.detail_key("categories.detail", category_id),
            namespaces=caching.category_namespaces(),
            data=lambda: self.get_serializer(self.get_object()).data,
        )

    def perform_create(self, serializer: BaseSerializer[Category]) -> None:
        data: dict[str, Any] = serializer.validated_data
        serializer.instance = services.category_create(name=data["name"], parent=data.get("parent"))

    def perform_update(self, serializer: BaseSerializer[Category]) -> None:
        data: dict[str, Any] = serializer.validated_data
        assert serializer.instance is not None  # noqa: S101 - set by get_object
        changes: dict[str, Any] = {}
        if "name" in data:
            changes["name"] = data["name"]
        if "parent" in data:
            changes["parent"] = data["parent"]
        serializer.instance = services.category_update(category=serializer.instance, **changes)

    def perform_destroy(self, instance: Category) -> None:
        services.category_delete(category=instance)


class ProductViewSet(viewsets.ModelViewSet[Product]):
    """Products. Anyone may read them; catalog managers change them, prices and stock included."""

    serializer_class = ProductSerializer
    lookup_value_regex = r"\d+"
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {
        "list": PUBLIC,
        "retrieve": PUBLIC,
        "create": ("catalog.add_product",),
        "partial_update": ("catalog.change_product",),
        "destroy": ("catalog.delete_product",),
    }
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Product]:
        return selectors.product_detail_queryset()

    @extend_schema(
        parameters=[ProductFilterSerializer, *_CONDITIONAL_PARAMETERS],
        responses={200: ProductSerializer, 304: _NOT_MODIFIED},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        query = product_list_query(request.query_params)  # the lean path's parser: its 400s
        params = caching.known_params(request.query_params, LIST_PARAMS)
        paginator = self.paginator
        assert isinstance(paginator, KeysetPagination)  # noqa: S101 - the project's default
        # Links carry the raw values the list read, as sent, and the key names them all.
        paginator.link_query = params
        key = caching.list_key(
            "products.list", base_uri=request.build_absolute_uri(request.path), params=params
        )

        def page() -> Any:
            queryset = selectors.product_list(
                category_id=query.category_id,
                min_price=query.min_price,
                max_price=query.max_price,
                in_stock=query.in_stock,
                name_query=query.name_query,
                ordering=query.ordering,
            )
            rows = paginator.paginate_at(
                queryset, request, position=query.position, forward=query.forward, size=query.size
            )
            zone = timezone.get_current_timezone()
            return paginator.get_paginated_response(
                [product_representation(row, zone=zone) for row in rows]
            ).data

        return caching.cached_json(
            request, key=key, namespaces=caching.product_list_namespaces(), data=page
        )

    @extend_schema(
        parameters=_CONDITIONAL_PARAMETERS,
        responses={200: ProductSerializer, 304: _NOT_MODIFIED},
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        product_id = int(self.kwargs[self.lookup_field])
        return caching.cached_json(
            request,
            key=caching.detail_key("products.detail", product_id),
            namespaces=caching.product_detail_namespaces(product_id),
            data=lambda: product_representation(self.get_object()),
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = services.product_create(**serializer.validated_data)
        return Response(self.get_serializer(product).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        product = self.get_object()
        serializer = self.get_serializer(product, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        product = services.product_update(product=product, **serializer.validated_data)
        return Response(self.get_serializer(product).data)

    def perform_destroy(self, instance: Product) -> None:
        services.product_delete(product=instance)
