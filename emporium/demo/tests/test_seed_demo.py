"""The seed_demo command: a fixed tree, deterministic products, consistent counters, idempotent."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Count, Sum
from pytest_django import Settings
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.catalog.models import Category, Product
from emporium.demo.seeding import EMBEDDED_ROLE_PASSWORD, TREE
from emporium.reviews.models import Review
from emporium.wishlists.models import Wishlist, WishlistItem

pytestmark = pytest.mark.django_db

CUSTOMER_NAMES = [f"customer{number:02d}" for number in range(1, 21)]


def _seed(products: int) -> str:
    out = StringIO()
    call_command("seed_demo", products=products, no_progress=True, stdout=out)
    return out.getvalue()


def _snapshot(*, sku_below: int | None = None) -> dict[str, list[Any]]:
    """Everything seed_demo writes, in a stable order and free of database ids."""
    products = Product.objects.order_by("sku")
    reviews = Review.objects.order_by("product__sku", "user__username")
    if sku_below is not None:
        skus = [f"DEMO-{index:07d}" for index in range(sku_below)]
        products = products.filter(sku__in=skus)
        reviews = reviews.filter(product__sku__in=skus)
    return {
        "products": list(
            products.values_list(
                "sku",
                "name",
                "description",
                "price",
                "stock_quantity",
                "category__path",
                "attributes",
                "review_count",
                "rating_total",
                "created_at",
            )
        ),
        "categories": list(Category.objects.order_by("path").values_list("path", "name", "depth")),
        "users": list(
            User.objects.order_by("username").values_list(
                "username", "email", "first_name", "last_name", "is_staff", "is_superuser"
            )
        ),
        "reviews": list(reviews.values_list("product__sku", "user__username", "rating", "comment")),
        "wishlist_items": list(
            WishlistItem.objects.order_by("wishlist__user__username", "product__sku").values_list(
                "wishlist__user__username", "product__sku"
            )
        ),
    }


def _login(username: str, password: str) -> Any:
    return APIClient().post(
        "/api/auth/login/", {"username": username, "password": password}, format="json"
    )


@pytest.fixture
def embedded(settings: Settings) -> None:
    # The production-profile run of the suite sets DATABASE_URL; the seed's
    # well-known staff password belongs to the embedded profile only.
    settings.EMPORIUM_PROFILE = "embedded"


# --- what one run creates -------------------------------------------------------------------


def test_seed_creates_the_three_level_category_tree(embedded: None) -> None:
    _seed(300)

    roots = Category.objects.filter(parent=None).order_by("pk")
    assert [root.name for root in roots] == list(TREE)
    assert Category.objects.count() == 6 + 6 * 4 + 6 * 4 * 4
    assert dict(
        Category.objects.values_list("depth").annotate(n=Count("id")).order_by("depth")
    ) == {0: 6, 1: 24, 2: 96}
    for root in roots:
        children = Category.objects.filter(parent=root).order_by("pk")
        assert [child.name for child in children] == list(TREE[root.name])
        for child in children:
            assert child.path == f"{root.pk}/{child.pk}/"
            leaves = Category.objects.filter(parent=child).order_by("pk")
            assert [leaf.name for leaf in leaves] == TREE[root.name][child.name]
            assert all(leaf.path == f"{child.path}{leaf.pk}/" for leaf in leaves)


def test_seed_creates_products_with_sequential_skus_in_leaf_categories(embedded: None) -> None:
    _seed(300)

    skus = list(Product.objects.order_by("sku").values_list("sku", flat=True))
    assert skus == [f"DEMO-{index:07d}" for index in range(300)]
    assert set(Product.objects.values_list("category__depth", flat=True)) == {2}
    # Every leaf gets products: 300 spread over 96 leaves round-robin.
    assert Product.objects.values("category").distinct().count() == 96


def test_the_products_are_the_same_on_every_machine(embedded: None) -> None:
    _seed(300)

    first = Product.objects.filter(sku="DEMO-0000000").values(
        "name", "description", "price", "stock_quantity", "category__name", "attributes"
    )
    assert first.get() == {
        "name": "Ergonomic Glass Laptop",
        "description": (
            "A ergonomic laptop in sand, made of glass. Part of our laptops range, model 1."
        ),
        "price": Decimal("55.05"),
        "stock_quantity": 262,
        "category__name": "Laptops",
        "attributes": {"colour": "sand", "material": "glass", "weight_g": 15972},
    }
    last = Product.objects.filter(sku="DEMO-0000299").values_list(
        "name", "price", "stock_quantity", "category__name"
    )
    assert last.get() == ("Heavy-duty Titanium Cable", Decimal("18.68"), 267, "Cables")
    assert list(
        Review.objects.filter(product__sku="DEMO-0000000").values_list(
            "user__username", "rating", "comment"
        )
    ) == [("customer05", 2, "Arrived quickly, works fine.")]


def test_seed_creates_staff_and_customers(embedded: None) -> None:
    _seed(300)

    assert list(User.objects.order_by("username").values_list("username", flat=True)) == [
        "admin",
        "catalog-manager",
        *CUSTOMER_NAMES,
        "support",
    ]
    admin = User.objects.get(username="admin")
    assert (admin.is_staff, admin.is_superuser) == (True, True)
    assert not User.objects.filter(username__in=CUSTOMER_NAMES, is_staff=True).exists()


def test_the_embedded_staff_account_logs_in_with_the_documented_password(
    embedded: None,
) -> None:
    output = _seed(300)

    response = _login("admin", "emporium-admin")

    assert "Staff login (embedded profile): admin / emporium-admin" in output
    assert response.status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    me = client.get("/api/auth/me/")
    assert (me.json()["username"], me.json()["is_staff"]) == ("admin", True)
    assert _login("customer01", "emporium-demo").status_code == 200
    assert _login("admin", "wrong-password").status_code == 401


def test_outside_the_embedded_profile_the_staff_password_is_random_and_printed_once(
    settings: Settings,
) -> None:
    settings.EMPORIUM_PROFILE = "production"

    first_output = _seed(30)
    second_output = _seed(30)

    staff_lines = [line for line in first_output.splitlines() if line.startswith("Staff login")]
    assert len(staff_lines) == 1
    password = staff_lines[0].rsplit(" / ", 1)[1]
    assert password != "emporium-admin"
    assert len(password) >= 20
    assert "Staff login" not in second_output  # the account exists: its password is kept
    assert _login("admin", password).status_code == 200
    assert _login("admin", "emporium-admin").status_code == 401
    # The demo customers' documented password is never set on a database server.
    assert "emporium-demo" not in first_output
    assert _login("customer01", "emporium-demo").status_code == 401
    assert not any(
        customer.has_usable_password()
        for customer in User.objects.filter(username__in=CUSTOMER_NAMES)
    )


def test_review_counters_match_the_reviews_exactly(embedded: None) -> None:
    _seed(300)

    assert Review.objects.count() > 0
    actual = {
        row["product"]: (row["n"], row["total"])
        for row in Review.objects.values("product").annotate(n=Count("id"), total=Sum("rating"))
    }
    for product_id, review_count, rating_total in Product.objects.values_list(
        "id", "review_count", "rating_total"
    ):
        assert (review_count, rating_total) == actual.get(product_id, (0, 0))
    # every third product is reviewed, by one to four customers
    reviewed = set(Review.objects.values_list("product__sku", flat=True))
    assert reviewed == {f"DEMO-{index:07d}" for index in range(0, 300, 3)}
    assert set(Review.objects.values_list("rating", flat=True)) <= {2, 3, 4, 5}


def test_every_customer_gets_a_wishlist_of_five_demo_products(embedded: None) -> None:
    _seed(300)

    assert Wishlist.objects.count() == 20
    per_user = dict(
        WishlistItem.objects.values_list("wishlist__user__username").annotate(n=Count("id"))
    )
    assert per_user == dict.fromkeys(CUSTOMER_NAMES, 5)
    assert not WishlistItem.objects.exclude(product__sku__startswith="DEMO-").exists()


def test_the_command_reports_what_it_made(embedded: None) -> None:
    output = _seed(300)

    reviews = Review.objects.count()
    assert output.splitlines() == [
        f"Demo data ready: 300 products in 126 categories, 23 users, {reviews} reviews, "
        "100 wishlist items.",
        "Staff login (embedded profile): admin / emporium-admin",
        "Demo customers: customer01..customer20 / emporium-demo",
        "Role logins (embedded profile): support, catalog-manager / emporium-staff",
    ]


# --- running again ------------------------------------------------------------------------


def test_a_second_run_changes_nothing(embedded: None) -> None:
    _seed(300)
    before = _snapshot()
    counters_before = (Product.objects.count(), Review.objects.count(), User.objects.count())

    _seed(300)

    assert _snapshot() == before
    assert (Product.objects.count(), Review.objects.count(), User.objects.count()) == (
        counters_before
    )


def test_more_products_later_keep_the_first_ones_identical(embedded: None) -> None:
    _seed(300)
    first_products = _snapshot(sku_below=300)

    _seed(450)

    grown = _snapshot(sku_below=300)
    assert grown["products"] == first_products["products"]
    assert grown["reviews"] == first_products["reviews"]
    assert grown["categories"] == first_products["categories"]
    assert list(Product.objects.order_by("sku").values_list("sku", flat=True)) == [
        f"DEMO-{index:07d}" for index in range(450)
    ]


def test_seeding_repairs_edited_demo_products_and_counters(embedded: None) -> None:
    _seed(60)
    before = _snapshot()
    Product.objects.filter(sku="DEMO-0000003").update(price=Decimal("1.00"), stock_quantity=0)
    Product.objects.filter(sku="DEMO-0000000").update(review_count=0, rating_total=0)

    _seed(60)

    assert _snapshot() == before


def test_other_catalog_data_is_left_alone(embedded: None) -> None:
    own = Category.objects.create(name="Own", path="", depth=0)
    Category.objects.filter(pk=own.pk).update(path=f"{own.pk}/")
    product = Product.objects.create(
        name="Mine", sku="MINE-1", price=Decimal("3.00"), category=own, stock_quantity=1
    )

    _seed(30)

    product.refresh_from_db()
    assert (product.name, product.sku, product.price, product.category_id) == (
        "Mine",
        "MINE-1",
        Decimal("3.00"),
        own.pk,
    )
    assert Product.objects.count() == 31


def test_zero_products_still_makes_the_tree_and_the_accounts(embedded: None) -> None:
    _seed(0)

    assert (Category.objects.count(), Product.objects.count(), User.objects.count()) == (
        126,
        0,
        23,
    )
    assert (Review.objects.count(), WishlistItem.objects.count()) == (0, 0)


def test_a_negative_product_count_is_refused_before_writing() -> None:
    err = StringIO()

    with pytest.raises(SystemExit) as raised:
        call_command("seed_demo", products=-1, no_progress=True, stderr=err)

    assert raised.value.code == 2
    assert err.getvalue().strip() == "--products must not be negative"
    assert (Category.objects.count(), Product.objects.count(), User.objects.count()) == (0, 0, 0)


def test_the_embedded_seed_makes_one_account_per_role(embedded: None) -> None:
    _seed(10)

    roles = {
        username: sorted(User.objects.get(username=username).groups.values_list("name", flat=True))
        for username in ("admin", "support", "catalog-manager", "customer01")
    }
    assert roles == {
        "admin": ["admin"],
        "support": ["support"],
        "catalog-manager": ["catalog_manager"],
        "customer01": ["customer"],
    }
    support = _login("support", EMBEDDED_ROLE_PASSWORD)
    assert support.status_code == 200
    manager = _login("catalog-manager", EMBEDDED_ROLE_PASSWORD)
    assert manager.status_code == 200


def test_outside_the_embedded_profile_there_are_no_role_accounts(settings: Settings) -> None:
    settings.EMPORIUM_PROFILE = "production"

    _seed(10)

    assert not User.objects.filter(username__in=["support", "catalog-manager"]).exists()
    assert list(User.objects.get(username="admin").groups.values_list("name", flat=True)) == [
        "admin"
    ]
