from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from emporium.core.models import TimeStampedModel

MAX_CATEGORY_DEPTH = 8

# The sorts the product list offers, each ending in the primary key (keyset
# pagination); Product.Meta.indexes has an index for each.
PRODUCT_ORDERINGS = {
    "price": ("price", "id"),
    "-price": ("-price", "-id"),
    "name": ("name", "id"),
    "-name": ("-name", "-id"),
    "created_at": ("created_at", "id"),
    "-created_at": ("-created_at", "-id"),
}
DEFAULT_PRODUCT_ORDERING = "-created_at"


def rating_average_of(*, total: int, count: int) -> Decimal | None:
    """The mean rating to two places, or None before the first review."""
    if not count:
        return None
    return (Decimal(total) / Decimal(count)).quantize(Decimal("0.01"))


class Category(TimeStampedModel):
    """A node of the category tree.

    ``path`` is the materialised chain of ids from the root, e.g. ``"3/17/42/"``:
    a whole subtree is one indexed prefix match, and a move that would put a
    category under its own descendant is caught by comparing prefixes.
    """

    name = models.CharField(max_length=120)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,  # a category with children must be emptied first
        related_name="children",
    )
    path = models.CharField(max_length=255, db_index=True, editable=False, default="")
    depth = models.PositiveSmallIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["path"]
        verbose_name_plural = "categories"
        constraints = [
            models.CheckConstraint(condition=~Q(parent=F("id")), name="category_not_own_parent"),
            models.UniqueConstraint(fields=["parent", "name"], name="category_unique_sibling_name"),
            models.UniqueConstraint(
                fields=["name"], condition=Q(parent__isnull=True), name="category_unique_root_name"
            ),
        ]
        indexes = [models.Index(fields=["name"], name="category_name_idx")]

    def __str__(self) -> str:
        return self.name


class Product(TimeStampedModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    sku = models.CharField("SKU", max_length=64, unique=True)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    stock_quantity = models.PositiveIntegerField(default=0)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    attributes = models.JSONField(default=dict, blank=True)
    # Kept current by the review services so lists never aggregate reviews.
    review_count = models.PositiveIntegerField(default=0, editable=False)
    rating_total = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="product_price_non_negative"),
            models.CheckConstraint(
                condition=Q(stock_quantity__gte=0), name="product_stock_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(rating_total__gte=F("review_count"))
                & Q(rating_total__lte=F("review_count") * 5),
                name="product_rating_total_consistent",
            ),
        ]
        indexes = [
            # One index per sort the API offers; the trailing id makes keyset
            # pagination an index range scan.
            models.Index(fields=["price", "id"], name="product_price_id_idx"),
            models.Index(fields=["name", "id"], name="product_name_id_idx"),
            models.Index(fields=["created_at", "id"], name="product_created_id_idx"),
            # A leaf category's page in each sort is one index range, not a scan of
            # the whole sort for its rows (docs/db_optimization.md).
            models.Index(fields=["category", "price", "id"], name="product_cat_price_id_idx"),
            models.Index(fields=["category", "name", "id"], name="product_cat_name_id_idx"),
            models.Index(
                fields=["category", "created_at", "id"], name="product_cat_created_id_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"

    @property
    def rating_average(self) -> Decimal | None:
        return rating_average_of(total=self.rating_total, count=self.review_count)

    @property
    def in_stock(self) -> bool:
        return self.stock_quantity > 0
