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
    # Unique through Meta.constraints, not unique=True: on PostgreSQL a unique
    # CharField also gets a varchar_pattern_ops index for LIKE 'prefix%', which
    # no query needs and every insert would pay for.
    sku = models.CharField("SKU", max_length=64)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    stock_quantity = models.PositiveIntegerField(default=0)
    # No index of its own: the three product_cat_* indexes start with category_id
    # and serve every look-up by category (the list, the cache bump, PROTECT's
    # check and the foreign key's on deleting a category, search's filter).
    category = models.ForeignKey(
        Category, on_delete=models.PROTECT, related_name="products", db_index=False
    )
    attributes = models.JSONField(default=dict, blank=True)
    # Kept current by the review services so lists never aggregate reviews.
    review_count = models.PositiveIntegerField(default=0, editable=False)
    rating_total = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            # The name of the constraint unique=True made (catalog.0001), kept.
            models.UniqueConstraint(fields=["sku"], name="catalog_product_sku_key"),
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


class ProductImportStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    COMPLETED = "completed", "completed"
    CANCELLED = "cancelled", "cancelled"
    FAILED = "failed", "failed"


class ProductImportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    NDJSON = "ndjson", "NDJSON"


# An import in one of these states answers a second upload of the same file;
# a cancelled or failed one does not, so the file can be sent again.
PRODUCT_IMPORT_LIVE_STATUSES = (
    ProductImportStatus.QUEUED,
    ProductImportStatus.RUNNING,
    ProductImportStatus.COMPLETED,
)


class ProductImport(TimeStampedModel):
    """One uploaded catalog file and how far its processing got (emporium.catalog.imports).

    The file is processed in chunks, each one transaction that also moves
    ``byte_offset`` and the counters, so a run that dies resumes after the last
    committed chunk and never applies a row twice.
    """

    created_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    file_name = models.CharField(max_length=255, blank=True)
    file_format = models.CharField(max_length=8, choices=ProductImportFormat.choices)
    encoding = models.CharField(max_length=16)
    content_sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    # Where the stored upload is, relative to CATALOG_IMPORT_DIR.
    stored_name = models.CharField(max_length=255)
    # The CSV header as read at upload, so a later chunk can start mid-file.
    columns = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16, choices=ProductImportStatus.choices, default=ProductImportStatus.QUEUED
    )
    cancel_requested = models.BooleanField(default=False)
    byte_offset = models.BigIntegerField(default=0)
    # Records read so far (the CSV header counts as the first), for row numbers.
    records_read = models.BigIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    rows_processed = models.BigIntegerField(default=0)
    rows_created = models.BigIntegerField(default=0)
    rows_updated = models.BigIntegerField(default=0)
    rows_unchanged = models.BigIntegerField(default=0)
    rows_failed = models.BigIntegerField(default=0)
    categories_created = models.PositiveIntegerField(default=0)
    # Errors past CATALOG_IMPORT_MAX_STORED_ERRORS are counted in rows_failed, not kept.
    errors_stored = models.PositiveIntegerField(default=0)
    failure = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["content_sha256"],
                condition=Q(status__in=PRODUCT_IMPORT_LIVE_STATUSES),
                name="product_import_one_live_per_content",
            ),
            models.CheckConstraint(
                condition=Q(byte_offset__gte=0) & Q(byte_offset__lte=F("size_bytes")),
                name="product_import_offset_within_file",
            ),
        ]

    def __str__(self) -> str:
        return f"import {self.pk} ({self.file_name or self.content_sha256[:12]})"


class ProductImportError(models.Model):
    """One rejected row of an import: where it is and what is wrong with it."""

    # Indexed by product_import_error_row_idx, which starts with it.
    product_import = models.ForeignKey(
        ProductImport, on_delete=models.CASCADE, related_name="errors", db_index=False
    )
    row_number = models.BigIntegerField()
    column = models.CharField(max_length=64, blank=True)
    message = models.CharField(max_length=255)
    value = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["product_import", "row_number", "id"]
        indexes = [
            models.Index(
                fields=["product_import", "row_number"], name="product_import_error_row_idx"
            )
        ]

    def __str__(self) -> str:
        return f"row {self.row_number}: {self.column} {self.message}"
