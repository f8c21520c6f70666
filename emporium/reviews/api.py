from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.permissions import SAFE_METHODS, IsAuthenticatedOrReadOnly
from rest_framework.request import Request
from rest_framework.response import Response

from emporium.accounts.auth import authenticated_user
from emporium.catalog.models import Product
from emporium.core.selectors import get_or_not_found
from emporium.reviews import selectors, services
from emporium.reviews.models import Review
from emporium.reviews.serializers import ReviewSerializer, ReviewUpdateSerializer


class ProductReviewViewSet(viewsets.ModelViewSet[Review]):
    """Reviews of one product. Anyone reads them; the author, or a moderator holding
    ``reviews.change_review`` / ``reviews.delete_review``, edits or deletes one."""

    serializer_class = ReviewSerializer
    permission_classes = [IsAuthenticatedOrReadOnly]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def _product(self) -> Product:
        return get_or_not_found(Product.objects.all(), pk=self.kwargs["product_pk"])

    def get_queryset(self) -> QuerySet[Review]:
        queryset = selectors.review_list_for_product(product_id=self._product().pk)
        if self.request.method not in SAFE_METHODS:
            # Someone else's review is as invisible to writes as a missing one.
            user = authenticated_user(self.request)
            moderates = {"PATCH": "reviews.change_review", "DELETE": "reviews.delete_review"}
            permission = moderates.get(self.request.method or "")
            if permission is None or not user.has_perm(permission):
                queryset = queryset.filter(user=user)
        return queryset

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        review = services.review_create(
            product=self._product(),
            user=authenticated_user(request),
            **serializer.validated_data,
        )
        return Response(self.get_serializer(review).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ReviewUpdateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        review = self.get_object()
        serializer = ReviewUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        review = services.review_update(review=review, **serializer.validated_data)
        return Response(self.get_serializer(review).data)

    def perform_destroy(self, instance: Review) -> None:
        services.review_delete(review=instance)
