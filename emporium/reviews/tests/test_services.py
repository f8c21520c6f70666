"""Review services keep the product's rating counters in step with the reviews."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from emporium.catalog.models import Product
from emporium.core.errors import InvalidInput
from emporium.core.tests.factories import ProductFactory, UserFactory, make_review
from emporium.reviews import services
from emporium.reviews.models import Review
from emporium.reviews.services import ReviewExists

pytestmark = pytest.mark.django_db


def _counters(product: Product) -> tuple[int, int]:
    return Product.objects.filter(pk=product.pk).values_list("review_count", "rating_total").get()


def _reviews() -> list[tuple[int, int, int, int, str]]:
    return list(
        Review.objects.order_by("pk").values_list(
            "pk", "product_id", "user_id", "rating", "comment"
        )
    )


def test_review_create_stores_the_review_and_moves_the_counters() -> None:
    product = ProductFactory()
    user = UserFactory()

    review = services.review_create(product=product, user=user, rating=4, comment="Nice")

    assert _reviews() == [(review.pk, product.pk, user.pk, 4, "Nice")]
    assert _counters(product) == (1, 4)

    services.review_create(product=product, user=UserFactory(), rating=3)

    assert _counters(product) == (2, 7)


def test_a_second_review_by_the_same_user_is_review_exists_and_changes_nothing() -> None:
    product = ProductFactory()
    user = UserFactory()
    make_review(product=product, user=user, rating=2)
    before = _reviews()

    with pytest.raises(ReviewExists) as raised:
        services.review_create(product=product, user=user, rating=5)

    assert (raised.value.code, raised.value.status_code) == ("review_exists", 409)
    assert _reviews() == before
    assert _counters(product) == (1, 2)


def test_the_same_user_may_review_different_products() -> None:
    user = UserFactory()
    first, second = ProductFactory(), ProductFactory()

    make_review(product=first, user=user, rating=1)
    make_review(product=second, user=user, rating=5)

    assert (_counters(first), _counters(second)) == ((1, 1), (1, 5))


@pytest.mark.parametrize("rating", [0, 6, -1])
def test_an_out_of_range_rating_is_invalid_input_not_review_exists(rating: int) -> None:
    product = ProductFactory()

    with pytest.raises(InvalidInput) as raised:
        services.review_create(product=product, user=UserFactory(), rating=rating)

    assert not isinstance(raised.value, ReviewExists)
    assert raised.value.details == {"rating": ["Must be between 1 and 5."]}
    assert _reviews() == []
    assert _counters(product) == (0, 0)


def test_review_update_moves_the_total_by_the_difference() -> None:
    product = ProductFactory()
    review = make_review(product=product, user=UserFactory(), rating=2)
    make_review(product=product, user=UserFactory(), rating=4)

    updated = services.review_update(review=review, rating=5)

    assert updated.rating == 5
    assert _counters(product) == (2, 9)

    services.review_update(review=review, comment="Changed my mind")

    review.refresh_from_db()
    assert (review.rating, review.comment) == (5, "Changed my mind")
    assert _counters(product) == (2, 9)


@pytest.mark.parametrize("rating", [0, 6])
def test_review_update_refuses_an_out_of_range_rating(rating: int) -> None:
    product = ProductFactory()
    review = make_review(product=product, user=UserFactory(), rating=3)
    before = _reviews()

    with pytest.raises(InvalidInput):
        services.review_update(review=review, rating=rating)

    assert _reviews() == before
    assert _counters(product) == (1, 3)


def test_review_delete_moves_the_counters_back_and_a_second_delete_is_a_no_op() -> None:
    product = ProductFactory()
    review = make_review(product=product, user=UserFactory(), rating=2)
    kept = make_review(product=product, user=UserFactory(), rating=5)

    services.review_delete(review=review)
    services.review_delete(review=review)  # a stale copy: already gone, counters untouched

    assert [row[0] for row in _reviews()] == [kept.pk]
    assert _counters(product) == (1, 5)


def test_the_database_refuses_a_rating_outside_1_to_5() -> None:
    review = make_review(product=ProductFactory(), user=UserFactory(), rating=3)
    before = _reviews()

    for rating in (0, 6):
        with pytest.raises(IntegrityError), transaction.atomic():
            Review.objects.filter(pk=review.pk).update(rating=rating)

    assert _reviews() == before


def test_the_database_refuses_a_second_review_by_the_same_user() -> None:
    product = ProductFactory()
    user = UserFactory()
    make_review(product=product, user=user, rating=3)
    before = _reviews()

    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(product=product, user=user, rating=4)

    assert _reviews() == before
