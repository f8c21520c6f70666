"""Review writes. Each one also moves the product's rating counters in the same transaction."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F

from emporium.accounts.models import User
from emporium.catalog import services as catalog_services
from emporium.catalog.models import Product
from emporium.core.errors import Conflict, InvalidInput
from emporium.reviews.models import Review


class ReviewExists(Conflict):
    code = "review_exists"
    default_message = "You have already reviewed this product; edit that review instead."


def _check_rating(rating: int) -> None:
    # Checked before writing: otherwise the database's check constraint would
    # surface as an IntegrityError, which review_create would report as a duplicate.
    if not 1 <= rating <= 5:
        raise InvalidInput(details={"rating": ["Must be between 1 and 5."]})


def _move_rating(*, product_id: int, count_delta: int, total_delta: int) -> None:
    Product.objects.filter(pk=product_id).update(
        review_count=F("review_count") + count_delta, rating_total=F("rating_total") + total_delta
    )
    # The product's rating_average and review_count are shown in the catalog.
    catalog_services.product_cache_invalidate(product_ids=[product_id], names_changed=False)


def review_create(*, product: Product, user: User, rating: int, comment: str = "") -> Review:
    _check_rating(rating)
    try:
        with transaction.atomic():
            review = Review.objects.create(
                product=product, user=user, rating=rating, comment=comment
            )
            _move_rating(product_id=product.pk, count_delta=1, total_delta=rating)
    except IntegrityError:
        raise ReviewExists() from None
    return review


def review_update(
    *, review: Review, rating: int | None = None, comment: str | None = None
) -> Review:
    if rating is not None:
        _check_rating(rating)
    with transaction.atomic():
        locked = Review.objects.select_for_update().get(pk=review.pk)
        fields: list[str] = []
        if rating is not None and rating != locked.rating:
            _move_rating(
                product_id=locked.product_id, count_delta=0, total_delta=rating - locked.rating
            )
            locked.rating = rating
            fields.append("rating")
        if comment is not None and comment != locked.comment:
            locked.comment = comment
            fields.append("comment")
        if fields:
            locked.save(update_fields=[*fields, "updated_at"])
    return locked


def review_delete(*, review: Review) -> None:
    with transaction.atomic():
        locked = Review.objects.select_for_update().filter(pk=review.pk).first()
        if locked is None:
            return  # a concurrent delete already moved the counters
        _move_rating(product_id=locked.product_id, count_delta=-1, total_delta=-locked.rating)
        locked.delete()
