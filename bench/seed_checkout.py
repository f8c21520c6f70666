"""Prepares buyers for the checkout benchmark: each has a filled cart and a token.

Run inside the benchmark's environment (production profile, its own database):
``python -m bench.seed_checkout --buyers 40000 --products 2000 --tokens FILE``.
"""

from __future__ import annotations

import argparse
import json
import random
from decimal import Decimal

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--buyers", type=int, required=True)
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--stock", type=int, default=1_000_000)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--initial", required=True, help="where to write initial stock per product")
    args = parser.parse_args()
    django.setup()

    from django.contrib.auth.hashers import make_password
    from rest_framework_simplejwt.tokens import AccessToken

    from emporium.accounts.models import User
    from emporium.carts.models import CartItem, ShoppingCart
    from emporium.catalog.models import Category, Product

    rng = random.Random(7)
    category = Category.objects.create(name="Bench", path="", depth=0)
    Category.objects.filter(pk=category.pk).update(path=f"{category.pk}/")
    products = Product.objects.bulk_create(
        Product(
            name=f"Bench product {index}",
            sku=f"BENCH-{index:06d}",
            price=Decimal(rng.randint(100, 50_000)) / 100,
            stock_quantity=args.stock,
            category=category,
        )
        for index in range(args.products)
    )
    password = make_password("bench-password")
    users = User.objects.bulk_create(
        (
            User(username=f"buyer{index}", email=f"buyer{index}@bench.example", password=password)
            for index in range(args.buyers)
        ),
        batch_size=5_000,
    )
    carts = ShoppingCart.objects.bulk_create(
        (ShoppingCart(user=user) for user in users), batch_size=5_000
    )
    items = []
    for cart in carts:
        for product in rng.sample(products, k=rng.randint(1, 3)):
            items.append(CartItem(cart=cart, product=product, quantity=rng.randint(1, 2)))
    CartItem.objects.bulk_create(items, batch_size=10_000)
    with open(args.tokens, "w") as handle:
        for user in users:
            handle.write(f"{AccessToken.for_user(user)}\n")
    with open(args.initial, "w") as handle:
        json.dump({str(product.pk): args.stock for product in products}, handle)
    print(f"seeded {len(users)} buyers, {len(items)} cart lines, {len(products)} products")


if __name__ == "__main__":
    main()
