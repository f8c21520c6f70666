from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from emporium.catalog import selectors, services
from emporium.catalog.models import Category, Product
from emporium.catalog.serializers import (
    CategorySerializer,
    ProductFilterSerializer,
    ProductSerializer,
)
from emporium.core.permissions import IsStaffOrReadOnly


class CategoryViewSet(viewsets.ModelViewSet):
    """The category tree. Anyone may read it; staff change it."""

    serializer_class = CategorySerializer
    lookup_value_regex = r"\d+"
    permission_classes = [IsStaffOrReadOnly]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Category]:
        return selectors.category_list()

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


class ProductViewSet(viewsets.ModelViewSet):
    """Products. Anyone may read them; staff change them."""

    serializer_class = ProductSerializer
    lookup_value_regex = r"\d+"
    permission_classes = [IsStaffOrReadOnly]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Product]:
        return selectors.product_detail_queryset()

    @extend_schema(parameters=[ProductFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        filters = ProductFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = filters.validated_data
        queryset = selectors.product_list(
            category_id=params.get("category"),
            min_price=params.get("min_price"),
            max_price=params.get("max_price"),
            in_stock=params.get("in_stock"),
            name_query=params.get("q"),
            ordering=params["ordering"],
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

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
