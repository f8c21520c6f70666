from __future__ import annotations

from django.db.models import QuerySet

from emporium.reviews.models import Review


def review_list_for_product(*, product_id: int) -> QuerySet[Review]:
    return (
        Review.objects.filter(product_id=product_id)
        .select_related("user")
        .order_by("-created_at", "-id")
    )
