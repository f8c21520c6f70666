"""Deterministic demo data: the same arguments always produce the same rows.

Every product is generated from its own index (its own random seed), so
seeding 2,000 products and later 100,000 gives the first 2,000 identical
rows. Products are upserted by SKU in bulk, users by username, reviews and
wishlist lines by their unique keys, so a second run changes nothing.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from emporium.accounts.models import User
from emporium.accounts.roles import Role, user_role_assign
from emporium.catalog import services as catalog_services
from emporium.catalog.models import Category, Product
from emporium.reviews.models import Review
from emporium.wishlists.models import Wishlist, WishlistItem

SKU_PREFIX = "DEMO-"
STAFF_USERNAME = "admin"
EMBEDDED_STAFF_PASSWORD = "emporium-admin"  # noqa: S105 - printed by the README, embedded only
CUSTOMER_PASSWORD = "emporium-demo"  # noqa: S105 - demo customers, documented in the README
CUSTOMER_COUNT = 20
# One account per back-office role besides admin, embedded profile only.
ROLE_USERNAMES = {Role.SUPPORT: "support", Role.CATALOG_MANAGER: "catalog-manager"}
EMBEDDED_ROLE_PASSWORD = "emporium-staff"  # noqa: S105 - printed by seed_demo, embedded only
BATCH_SIZE = 5_000

TREE: dict[str, dict[str, list[str]]] = {
    "Electronics": {
        "Computers": ["Laptops", "Desktops", "Monitors", "Keyboards"],
        "Audio": ["Headphones", "Speakers", "Microphones", "Turntables"],
        "Phones": ["Smartphones", "Cases", "Chargers", "Cables"],
        "Cameras": ["Mirrorless", "Lenses", "Tripods", "Drones"],
    },
    "Home": {
        "Kitchen": ["Cookware", "Knives", "Small appliances", "Tableware"],
        "Furniture": ["Chairs", "Tables", "Shelving", "Beds"],
        "Lighting": ["Desk lamps", "Floor lamps", "Ceiling lights", "Bulbs"],
        "Textiles": ["Bedding", "Towels", "Rugs", "Curtains"],
    },
    "Outdoors": {
        "Camping": ["Tents", "Sleeping bags", "Stoves", "Lanterns"],
        "Cycling": ["Bikes", "Helmets", "Bike lights", "Locks"],
        "Hiking": ["Backpacks", "Boots", "Poles", "Water bottles"],
        "Garden": ["Tools", "Planters", "Hoses", "Seeds"],
    },
    "Fashion": {
        "Men": ["Shirts", "Trousers", "Jackets", "Shoes"],
        "Women": ["Dresses", "Blouses", "Coats", "Boots"],
        "Accessories": ["Watches", "Belts", "Bags", "Sunglasses"],
        "Kids": ["T-shirts", "Sneakers", "Raincoats", "Hats"],
    },
    "Books": {
        "Fiction": ["Crime", "Science fiction", "Fantasy", "Romance"],
        "Non-fiction": ["History", "Science", "Travel", "Cooking"],
        "Children": ["Picture books", "Early readers", "Activity books", "Comics"],
        "Education": ["Mathematics", "Languages", "Programming", "Exam guides"],
    },
    "Sports": {
        "Fitness": ["Dumbbells", "Yoga mats", "Resistance bands", "Kettlebells"],
        "Team sports": ["Footballs", "Basketballs", "Goals", "Jerseys"],
        "Racket sports": ["Tennis rackets", "Badminton", "Squash", "Table tennis"],
        "Water sports": ["Swimwear", "Goggles", "Paddle boards", "Wetsuits"],
    },
}

ADJECTIVES = [
    "Compact",
    "Classic",
    "Rugged",
    "Featherweight",
    "Premium",
    "Everyday",
    "Modular",
    "Silent",
    "Vintage",
    "Smart",
    "Foldable",
    "Heavy-duty",
    "Ergonomic",
    "Wireless",
    "Handmade",
    "Eco",
    "Professional",
    "Travel",
    "Deluxe",
    "Minimalist",
]
MATERIALS = [
    "Oak",
    "Steel",
    "Aluminium",
    "Bamboo",
    "Carbon",
    "Linen",
    "Leather",
    "Ceramic",
    "Walnut",
    "Titanium",
    "Wool",
    "Cotton",
    "Glass",
    "Copper",
    "Recycled",
]
COLOURS = ["black", "white", "red", "green", "blue", "grey", "sand", "navy", "olive", "orange"]
COMMENTS = [
    "Does exactly what it says.",
    "Sturdy and well made.",
    "Arrived quickly, works fine.",
    "Smaller than I expected.",
    "Great value for the price.",
    "Would buy again.",
    "The finish could be better.",
    "Exceeded my expectations.",
]


@dataclass(frozen=True)
class SeedReport:
    categories: int
    products: int
    users: int
    reviews: int
    wishlist_items: int
    staff_username: str
    staff_password: str | None  # set only when the password is known to print
    role_usernames: tuple[str, ...] = ()  # the per-role accounts, embedded profile only


def _leaf_name(parts: tuple[str, ...]) -> str:
    return parts[-1]


def seed_categories() -> list[Category]:
    """Creates the three-level tree if missing; returns its leaves in a fixed order."""
    leaves: list[Category] = []
    for root_name, children in TREE.items():
        root = _category(name=root_name, parent=None)
        for child_name, leaf_names in children.items():
            child = _category(name=child_name, parent=root)
            leaves.extend(_category(name=leaf_name, parent=child) for leaf_name in leaf_names)
    return leaves


def _category(*, name: str, parent: Category | None) -> Category:
    existing = Category.objects.filter(name=name, parent=parent).first()
    return existing or catalog_services.category_create(name=name, parent=parent)


def demo_product(index: int, leaves: list[Category]) -> Product:
    rng = random.Random(index)  # noqa: S311 - demo data, not security
    leaf = leaves[index % len(leaves)]
    noun = leaf.name.rstrip("s") if leaf.name.endswith("s") else leaf.name
    adjective, material = rng.choice(ADJECTIVES), rng.choice(MATERIALS)
    colour = rng.choice(COLOURS)
    price = Decimal(rng.randint(199, 99_999)) / 100
    return Product(
        sku=f"{SKU_PREFIX}{index:07d}",
        name=f"{adjective} {material} {noun}",
        description=(
            f"A {adjective.lower()} {noun.lower()} in {colour}, made of {material.lower()}. "
            f"Part of our {leaf.name.lower()} range, model {index % 997 + 1}."
        ),
        price=price,
        stock_quantity=0 if rng.random() < 0.08 else rng.randint(1, 500),
        category=leaf,
        attributes={
            "colour": colour,
            "material": material.lower(),
            "weight_g": rng.randint(50, 25_000),
        },
    )


def _batches(total: int) -> Iterator[range]:
    for start in range(0, total, BATCH_SIZE):
        yield range(start, min(start + BATCH_SIZE, total))


def seed_products(*, count: int, leaves: list[Category], progress: Callable[[int], object]) -> None:
    for batch in _batches(count):
        Product.objects.bulk_create(
            [demo_product(index, leaves) for index in batch],
            update_conflicts=True,
            unique_fields=["sku"],
            update_fields=[
                "name",
                "description",
                "price",
                "stock_quantity",
                "category",
                "attributes",
            ],
        )
        progress(len(batch))


def seed_users() -> tuple[User, list[User], str | None]:
    staff = User.objects.filter(username=STAFF_USERNAME).first()
    printed_password: str | None = None
    if settings.EMPORIUM_PROFILE == "embedded":
        printed_password = EMBEDDED_STAFF_PASSWORD
    elif staff is None:
        # Outside the embedded profile there is no well-known password: a random
        # one is printed once, when the account is first made.
        printed_password = secrets.token_urlsafe(18)
    if staff is None:
        staff = User(username=STAFF_USERNAME, email="admin@emporium.example")
    staff.is_staff = staff.is_superuser = True
    if printed_password is not None:
        staff.set_password(printed_password)
    staff.save()

    # The documented customer password only where the demo is the whole system: on
    # a database server the demo customers cannot sign in until an operator sets
    # a password (make_password(None) is Django's unusable password).
    embedded = settings.EMPORIUM_PROFILE == "embedded"
    customer_hash = make_password(CUSTOMER_PASSWORD if embedded else None)
    customers: list[User] = []
    for number in range(1, CUSTOMER_COUNT + 1):
        username = f"customer{number:02d}"
        user, _ = User.objects.update_or_create(
            username=username,
            defaults={
                "email": f"{username}@emporium.example",
                "first_name": "Demo",
                "last_name": f"Customer {number}",
            },
            create_defaults={
                "email": f"{username}@emporium.example",
                "first_name": "Demo",
                "last_name": f"Customer {number}",
                "password": customer_hash,
            },
        )
        customers.append(user)
    user_role_assign(user=staff, role=Role.ADMIN)
    # Superuser status is not a role: the account keeps it alongside the admin group.
    for customer in customers:
        user_role_assign(user=customer, role=Role.CUSTOMER)
    return staff, customers, printed_password


def seed_role_users() -> tuple[str, ...]:
    """A demo account per back-office role, with a well-known password: embedded only."""
    if settings.EMPORIUM_PROFILE != "embedded":
        return ()
    password = make_password(EMBEDDED_ROLE_PASSWORD)
    for role, username in ROLE_USERNAMES.items():
        user, _ = User.objects.update_or_create(
            username=username,
            defaults={"email": f"{username}@emporium.example"},
            create_defaults={"email": f"{username}@emporium.example", "password": password},
        )
        user_role_assign(user=user, role=role)
    return tuple(ROLE_USERNAMES.values())


def seed_reviews_and_wishlists(*, product_count: int, customers: list[User]) -> None:
    reviewed_count = min(product_count, 5_000)
    products = dict(
        Product.objects.filter(
            sku__in=[f"{SKU_PREFIX}{i:07d}" for i in range(reviewed_count)]
        ).values_list("sku", "id")
    )
    reviews: list[Review] = []
    for index in range(0, reviewed_count, 3):
        rng = random.Random(1_000_000 + index)  # noqa: S311 (demo data, not secrets)
        product_id = products[f"{SKU_PREFIX}{index:07d}"]
        for customer in rng.sample(customers, k=rng.randint(1, 4)):
            reviews.append(
                Review(
                    product_id=product_id,
                    user=customer,
                    rating=rng.choice([2, 3, 4, 4, 5, 5]),
                    comment=rng.choice(COMMENTS),
                )
            )
    Review.objects.bulk_create(reviews, ignore_conflicts=True, batch_size=BATCH_SIZE)
    # Set the rating counters from the reviews themselves: correct however often this runs.
    review_stats = Review.objects.filter(product=OuterRef("pk")).values("product")
    Product.objects.filter(id__in=products.values()).update(
        review_count=Coalesce(
            Subquery(review_stats.annotate(n=Count("id")).values("n"), output_field=IntegerField()),
            Value(0),
        ),
        rating_total=Coalesce(
            Subquery(
                review_stats.annotate(t=Sum("rating")).values("t"), output_field=IntegerField()
            ),
            Value(0),
        ),
    )

    wishlist_lines: list[WishlistItem] = []
    product_ids = list(products.values())
    for number, customer in enumerate(customers):
        wishlist, _ = Wishlist.objects.get_or_create(user=customer)
        rng = random.Random(2_000_000 + number)  # noqa: S311 (demo data, not secrets)
        for product_id in rng.sample(product_ids, k=min(5, len(product_ids))):
            wishlist_lines.append(WishlistItem(wishlist=wishlist, product_id=product_id))
    WishlistItem.objects.bulk_create(wishlist_lines, ignore_conflicts=True)


def seed_demo(
    *, product_count: int, progress: Callable[[int], object] = lambda _: None
) -> SeedReport:
    with transaction.atomic():
        leaves = seed_categories()
        staff, customers, staff_password = seed_users()
        role_usernames = seed_role_users()
    seed_products(count=product_count, leaves=leaves, progress=progress)
    with transaction.atomic():
        seed_reviews_and_wishlists(product_count=product_count, customers=customers)
    # Bulk writes bypass the catalog services: drop every cached catalog response.
    catalog_services.catalog_cache_invalidate()
    return SeedReport(
        categories=Category.objects.count(),
        products=Product.objects.filter(sku__startswith=SKU_PREFIX).count(),
        users=User.objects.count(),
        reviews=Review.objects.count(),
        wishlist_items=WishlistItem.objects.count(),
        staff_username=staff.username,
        staff_password=staff_password,
        role_usernames=role_usernames,
    )
