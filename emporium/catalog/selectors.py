from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from emporium.catalog.models import Category, Product
from emporium.core.errors import InvalidInput

PRODUCT_ORDERINGS = {
    "price": ("price", "id"),
    "-price": ("-price", "-id"),
    "name": ("name", "id"),
    "-name": ("-name", "-id"),
    "created_at": ("created_at", "id"),
    "-created_at": ("-created_at", "-id"),
}
DEFAULT_PRODUCT_ORDERING = "-created_at"


def category_list() -> QuerySet[Category]:
    return Category.objects.order_by("path", "id")


def category_subtree_ids(*, category_id: int) -> QuerySet[Category, Any]:
    """The category and all its descendants, as a subquery of ids."""
    path = Category.objects.filter(pk=category_id).values_list("path", flat=True).first()
    if path is None:
        raise InvalidInput(
            "No such category.", details={"category": [f"Category {category_id} does not exist."]}
        )
    return Category.objects.filter(path__startswith=path).values("id")


def product_list(
    *,
    category_id: int | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    in_stock: bool | None = None,
    name_query: str | None = None,
    ordering: str = DEFAULT_PRODUCT_ORDERING,
) -> QuerySet[Product]:
    queryset = Product.objects.select_related("category")
    if category_id is not None:
        queryset = queryset.filter(category_id__in=category_subtree_ids(category_id=category_id))
    if min_price is not None:
        queryset = queryset.filter(price__gte=min_price)
    if max_price is not None:
        queryset = queryset.filter(price__lte=max_price)
    if in_stock is True:
        queryset = queryset.filter(stock_quantity__gt=0)
    elif in_stock is False:
        queryset = queryset.filter(stock_quantity=0)
    if name_query:
        queryset = queryset.filter(name__icontains=name_query)
    return queryset.order_by(*PRODUCT_ORDERINGS[ordering])


def product_detail_queryset() -> QuerySet[Product]:
    return Product.objects.select_related("category")
