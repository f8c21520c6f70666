"""/api/products/<id>/reviews/: public reads, one review per user, author-only writes."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.accounts.roles import Role
from emporium.catalog.models import Product
from emporium.core.tests.factories import (
    ProductFactory,
    StaffFactory,
    UserFactory,
    client_for,
    make_review,
)
from emporium.reviews.models import Review

pytestmark = pytest.mark.django_db

NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "details": {}}}


def _reviews_url(product_id: int) -> str:
    return f"/api/products/{product_id}/reviews/"


def _review_url(product_id: int, review_id: int) -> str:
    return f"/api/products/{product_id}/reviews/{review_id}/"


def _api_datetime(value: datetime.datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _body(review: Review) -> dict[str, Any]:
    review.refresh_from_db()
    return {
        "id": review.pk,
        "product": review.product_id,
        "user": review.user_id,
        "username": review.user.username,
        "rating": review.rating,
        "comment": review.comment,
        "created_at": _api_datetime(review.created_at),
        "updated_at": _api_datetime(review.updated_at),
    }


def _reviews() -> list[tuple[Any, ...]]:
    return list(
        Review.objects.order_by("pk").values_list(
            "pk", "product_id", "user_id", "rating", "comment", "updated_at"
        )
    )


def _counters(product: Product) -> tuple[int, int]:
    return Product.objects.filter(pk=product.pk).values_list("review_count", "rating_total").get()


def _rating_summary(client: APIClient, product: Product) -> tuple[int, str | None]:
    body = client.get(f"/api/products/{product.pk}/").json()
    return body["review_count"], body["rating_average"]


@pytest.fixture
def product() -> Product:
    return ProductFactory()


@pytest.fixture
def author() -> User:
    return UserFactory()


# --- reads --------------------------------------------------------------------------------


def test_anyone_lists_a_products_reviews_newest_first(
    api_client: APIClient, product: Product
) -> None:
    older = make_review(product=product, user=UserFactory(), rating=5, comment="Old")
    newer = make_review(product=product, user=UserFactory(), rating=2, comment="New")
    newest = make_review(product=product, user=UserFactory(), rating=4)
    make_review(product=ProductFactory(), user=UserFactory(), rating=1)  # another product's
    # creation time decides the order, not the id
    base = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    for review, minutes in ((older, 0), (newer, 5), (newest, 10)):
        Review.objects.filter(pk=review.pk).update(
            created_at=base + datetime.timedelta(minutes=minutes)
        )
    Review.objects.filter(pk=older.pk).update(id=999_999)  # the oldest now has the largest id
    older = Review.objects.get(pk=999_999)

    response = api_client.get(_reviews_url(product.pk))

    assert response.status_code == 200
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [_body(newest), _body(newer), _body(older)],
    }


def test_reviews_page_by_keyset(api_client: APIClient, product: Product) -> None:
    reviews = [make_review(product=product, user=UserFactory(), rating=3) for _ in range(5)]

    first = api_client.get(_reviews_url(product.pk), {"page_size": 3})
    second = api_client.get(first.json()["next"])

    ids = [row["id"] for row in first.json()["results"] + second.json()["results"]]
    assert sorted(ids) == sorted(review.pk for review in reviews)
    assert len(set(ids)) == 5
    assert second.json()["next"] is None


def test_anyone_reads_one_review(api_client: APIClient, product: Product, author: User) -> None:
    review = make_review(product=product, user=author, rating=4, comment="Good")

    response = api_client.get(_review_url(product.pk, review.pk))

    assert response.status_code == 200
    assert response.json() == _body(review)
    assert response.json()["username"] == author.username


def test_reviews_of_a_missing_product_are_404(api_client: APIClient, author: User) -> None:
    listing = api_client.get(_reviews_url(999_999))
    creating = client_for(author).post(_reviews_url(999_999), {"rating": 4}, format="json")

    assert (listing.status_code, listing.json()) == (404, NOT_FOUND)
    assert (creating.status_code, creating.json()) == (404, NOT_FOUND)
    assert _reviews() == []


def test_a_review_under_the_wrong_product_is_404(
    api_client: APIClient, product: Product, author: User
) -> None:
    review = make_review(product=product, user=author, rating=4)
    other = ProductFactory()
    before = _reviews()
    url = _review_url(other.pk, review.pk)

    read = api_client.get(url)
    patched = client_for(author).patch(url, {"rating": 1}, format="json")
    deleted = client_for(author).delete(url)

    for response in (read, patched, deleted):
        assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert _reviews() == before
    assert _counters(product) == (1, 4)


# --- create -------------------------------------------------------------------------------


def test_creating_requires_authentication(api_client: APIClient, product: Product) -> None:
    response = api_client.post(_reviews_url(product.pk), {"rating": 4}, format="json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert _reviews() == []
    assert _counters(product) == (0, 0)


def test_a_customer_creates_a_review(product: Product, author: User) -> None:
    response = client_for(author).post(
        _reviews_url(product.pk), {"rating": 4, "comment": "Solid."}, format="json"
    )

    assert response.status_code == 201
    review = Review.objects.get()
    assert response.json() == _body(review)
    assert (review.product_id, review.user_id, review.rating, review.comment) == (
        product.pk,
        author.pk,
        4,
        "Solid.",
    )
    assert _counters(product) == (1, 4)


def test_a_second_review_by_the_same_user_is_409_review_exists(
    product: Product, author: User
) -> None:
    client = client_for(author)
    assert client.post(_reviews_url(product.pk), {"rating": 2}, format="json").status_code == 201
    before = _reviews()

    response = client.post(_reviews_url(product.pk), {"rating": 5}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "review_exists",
            "message": "You have already reviewed this product; edit that review instead.",
            "details": {},
        }
    }
    assert _reviews() == before
    assert _counters(product) == (1, 2)


@pytest.mark.parametrize(
    ("rating", "message"),
    [
        (0, "Ensure this value is greater than or equal to 1."),
        (6, "Ensure this value is less than or equal to 5."),
        ("five", "A valid integer is required."),
        (None, "This field may not be null."),
    ],
)
def test_an_invalid_rating_is_400_and_nothing_is_written(
    product: Product, author: User, rating: Any, message: str
) -> None:
    response = client_for(author).post(_reviews_url(product.pk), {"rating": rating}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": "The request contains invalid data.",
        "details": {"rating": [message]},
    }
    assert _reviews() == []
    assert _counters(product) == (0, 0)


def test_user_and_product_in_the_body_are_ignored_on_create(product: Product, author: User) -> None:
    someone_else, other_product = UserFactory(), ProductFactory()

    response = client_for(author).post(
        _reviews_url(product.pk),
        {"rating": 3, "user": someone_else.pk, "product": other_product.pk, "id": 777_777},
        format="json",
    )

    assert response.status_code == 201
    review = Review.objects.get()
    assert (review.user_id, review.product_id) == (author.pk, product.pk)
    assert review.pk != 777_777
    assert _counters(other_product) == (0, 0)


# --- the product's rating summary ---------------------------------------------------------


# Really committed, as each request is in production: the product's cached page is
# invalidated after commit, which a test-wide transaction would never reach.
@pytest.mark.django_db(transaction=True)
def test_the_product_shows_count_and_average_through_create_update_and_delete(
    api_client: APIClient, product: Product
) -> None:
    first_author, second_author, third_author = UserFactory(), UserFactory(), UserFactory()
    assert _rating_summary(api_client, product) == (0, None)

    created = client_for(first_author).post(_reviews_url(product.pk), {"rating": 3}, format="json")
    client_for(second_author).post(_reviews_url(product.pk), {"rating": 4}, format="json")
    assert _rating_summary(api_client, product) == (2, "3.50")

    client_for(third_author).post(_reviews_url(product.pk), {"rating": 4}, format="json")
    assert _rating_summary(api_client, product) == (3, "3.67")

    first_url = _review_url(product.pk, created.json()["id"])
    client_for(first_author).patch(first_url, {"rating": 1}, format="json")
    assert _rating_summary(api_client, product) == (3, "3.00")

    client_for(first_author).delete(first_url)
    assert _rating_summary(api_client, product) == (2, "4.00")
    assert _counters(product) == (2, 8)


def test_the_average_goes_back_to_none_when_the_last_review_is_deleted(
    api_client: APIClient, product: Product, author: User
) -> None:
    review = make_review(product=product, user=author, rating=5)

    response = client_for(author).delete(_review_url(product.pk, review.pk))

    assert response.status_code == 204
    assert _rating_summary(api_client, product) == (0, None)
    assert _counters(product) == (0, 0)


# --- update and delete --------------------------------------------------------------------


def test_the_author_updates_rating_and_comment(product: Product, author: User) -> None:
    review = make_review(product=product, user=author, rating=2, comment="Meh")

    response = client_for(author).patch(
        _review_url(product.pk, review.pk), {"rating": 5, "comment": "Grew on me"}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == _body(review)
    assert (review.rating, review.comment) == (5, "Grew on me")
    assert _counters(product) == (1, 5)


def test_user_and_product_cannot_be_changed_by_an_update(product: Product, author: User) -> None:
    review = make_review(product=product, user=author, rating=2)
    someone_else, other_product = UserFactory(), ProductFactory()

    response = client_for(author).patch(
        _review_url(product.pk, review.pk),
        {"rating": 3, "user": someone_else.pk, "product": other_product.pk},
        format="json",
    )

    assert response.status_code == 200
    review.refresh_from_db()
    assert (review.user_id, review.product_id, review.rating) == (author.pk, product.pk, 3)
    assert (_counters(product), _counters(other_product)) == ((1, 3), (0, 0))


@pytest.mark.parametrize("rating", [0, 6])
def test_an_update_with_an_invalid_rating_is_400(
    product: Product, author: User, rating: int
) -> None:
    review = make_review(product=product, user=author, rating=2)
    before = _reviews()

    response = client_for(author).patch(
        _review_url(product.pk, review.pk), {"rating": rating}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == ["rating"]
    assert _reviews() == before
    assert _counters(product) == (1, 2)


def test_the_author_deletes_a_review(product: Product, author: User) -> None:
    review = make_review(product=product, user=author, rating=2)
    kept = make_review(product=product, user=UserFactory(), rating=5)

    response = client_for(author).delete(_review_url(product.pk, review.pk))

    assert response.status_code == 204
    assert list(Review.objects.values_list("pk", flat=True)) == [kept.pk]
    assert _counters(product) == (1, 5)


@pytest.mark.parametrize("intruder_kind", ["customer", Role.SUPPORT, Role.CATALOG_MANAGER])
def test_someone_elses_review_looks_exactly_like_a_missing_one(
    product: Product, author: User, intruder_kind: str
) -> None:
    review = make_review(product=product, user=author, rating=4, comment="Mine")
    intruder = client_for(
        UserFactory() if intruder_kind == "customer" else StaffFactory(role=Role(intruder_kind))
    )
    before = _reviews()

    patched = intruder.patch(
        _review_url(product.pk, review.pk), {"rating": 1, "comment": "Hacked"}, format="json"
    )
    deleted = intruder.delete(_review_url(product.pk, review.pk))
    patched_missing = intruder.patch(_review_url(product.pk, 999_999), {"rating": 1}, format="json")
    deleted_missing = intruder.delete(_review_url(product.pk, 999_999))

    assert (patched.status_code, patched.json()) == (404, NOT_FOUND)
    assert (deleted.status_code, deleted.json()) == (404, NOT_FOUND)
    assert (patched_missing.status_code, patched_missing.json()) == (404, NOT_FOUND)
    assert (deleted_missing.status_code, deleted_missing.json()) == (404, NOT_FOUND)
    assert _reviews() == before
    assert _counters(product) == (1, 4)


def test_anonymous_update_and_delete_are_401(
    api_client: APIClient, product: Product, author: User
) -> None:
    review = make_review(product=product, user=author, rating=4)
    before = _reviews()

    patched = api_client.patch(_review_url(product.pk, review.pk), {"rating": 1}, format="json")
    deleted = api_client.delete(_review_url(product.pk, review.pk))

    assert (patched.status_code, deleted.status_code) == (401, 401)
    assert _reviews() == before


@pytest.mark.parametrize("moderator_kind", ["superuser", Role.ADMIN])
def test_a_moderator_may_remove_any_review(
    product: Product, author: User, moderator_kind: str
) -> None:
    review = make_review(product=product, user=author, rating=4)
    moderator = (
        UserFactory(is_staff=True, is_superuser=True)
        if moderator_kind == "superuser"
        else StaffFactory(role=Role.ADMIN)
    )

    response = client_for(moderator).delete(_review_url(product.pk, review.pk))

    assert response.status_code == 204
    assert _reviews() == []
    assert _counters(product) == (0, 0)


def test_deleting_a_product_takes_its_reviews_with_it(product: Product, author: User) -> None:
    make_review(product=product, user=author, rating=4)
    staff = client_for(StaffFactory())

    response = staff.delete(f"/api/products/{product.pk}/")

    assert response.status_code == 204
    assert _reviews() == []
