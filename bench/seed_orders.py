"""Prepares the orders benchmark's customer: 30 orders of two lines each, placed by checkout.

Run inside the benchmark's environment (production profile, its own database):
``python -m bench.seed_orders --orders 30 --out FILE``; FILE gets the customer's
access token on its first line and one order id on the second.
"""

from __future__ import annotations

import argparse
from decimal import Decimal

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=30)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    django.setup()

    from rest_framework_simplejwt.tokens import AccessToken

    from emporium.accounts.models import User
    from emporium.carts.services import cart_item_add
    from emporium.catalog.models import Category, Product
    from emporium.orders.services import order_place

    category = Category.objects.create(name="Bench", path="", depth=0)
    Category.objects.filter(pk=category.pk).update(path=f"{category.pk}/")
    products = [
        Product.objects.create(
            name=f"Bench product {index}",
            sku=f"BENCH-ORDERS-{index}",
            price=Decimal(f"{10 + index}.50"),
            stock_quantity=1_000_000,
            category=category,
        )
        for index in range(4)
    ]
    customer = User.objects.create_user(
        username="orders-bench", email="orders-bench@bench.example", password=None
    )
    orders = []
    for number in range(args.orders):
        for product in (products[number % 4], products[(number + 1) % 4]):
            cart_item_add(user=customer, product=product, quantity=1 + number % 2)
        orders.append(
            order_place(user_id=customer.pk, shipping_address="1 Bench Street", phone="+4930000")
        )
    with open(args.out, "w") as handle:
        handle.write(f"{AccessToken.for_user(customer)}\n{orders[0].pk}\n")
    print(f"seeded a customer with {len(orders)} orders")


if __name__ == "__main__":
    main()
