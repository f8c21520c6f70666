"""Small helpers for the catalog tests (the shared factories live in core/tests)."""

from __future__ import annotations

import datetime
from typing import Any

from rest_framework.response import Response

from emporium.catalog.models import Category, Product

PRODUCT_LIST_URL = "/api/products/"
CATEGORY_LIST_URL = "/api/categories/"


def product_url(product_id: int) -> str:
    return f"/api/products/{product_id}/"


def category_url(category_id: int) -> str:
    return f"/api/categories/{category_id}/"


def error_of(response: Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def result_ids(response: Response) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def api_datetime(value: datetime.datetime) -> str:
    """A datetime as DRF renders it."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def category_tree_state() -> list[tuple[int, int | None, str, int, str]]:
    """Every category row, to compare before and after a refused write."""
    return list(
        Category.objects.order_by("pk").values_list("pk", "parent_id", "path", "depth", "name")
    )


def product_state() -> list[tuple[Any, ...]]:
    """Every product row, to compare before and after a refused write."""
    return list(
        Product.objects.order_by("pk").values_list(
            "pk",
            "sku",
            "name",
            "description",
            "price",
            "stock_quantity",
            "category_id",
            "attributes",
            "review_count",
            "rating_total",
            "created_at",
            "updated_at",
        )
    )


def product_body(product: Product) -> dict[str, Any]:
    """The exact API representation of ``product`` as it is stored now."""
    product.refresh_from_db()
    average = product.rating_average
    return {
        "id": product.pk,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "price": f"{product.price:.2f}",
        "stock_quantity": product.stock_quantity,
        "in_stock": product.stock_quantity > 0,
        "category": product.category_id,
        "category_name": product.category.name,
        "attributes": product.attributes,
        "rating_average": None if average is None else f"{average:.2f}",
        "review_count": product.review_count,
        "created_at": api_datetime(product.created_at),
        "updated_at": api_datetime(product.updated_at),
    }
