"""Seeding shared by the signed-in and journey benchmarks, run through ``manage.py shell``.

The code is sent as text to the tree under test (this tree, or an earlier
revision checked out by ``bench.compare``), so it uses only what both have:
the models and the cart, wishlist and checkout services.
"""

from __future__ import annotations

from pathlib import Path

from bench import common

PASSWORD = "bench-shopper-password"  # noqa: S105 - a throwaway account on a throwaway database


def seed_catalog(
    env: dict[str, str], *, products: int, database: str, cwd: Path | None = None
) -> None:
    """The demo catalog of ``products`` products, every one in stock for the whole run."""
    common.manage(env, "seed_demo", "--products", str(products), "--no-progress", cwd=cwd)
    common.psql("UPDATE catalog_product SET stock_quantity = 1000000000", database)


def seed_shoppers(
    env: dict[str, str], *, count: int, out: Path, orders: int = 0, cwd: Path | None = None
) -> None:
    """``count`` customers ``shopper0``…, each with a token; the first with a cart of two
    lines, a wishlist of two and ``orders`` orders of one or two lines.

    ``out`` gets one line per customer: ``username<TAB>access token``, then, on the
    last line, ``#<first order id>`` when orders were made, and ``@<product ids>``.
    """
    code = f"""
from django.contrib.auth.hashers import make_password
from rest_framework_simplejwt.tokens import AccessToken
from emporium.accounts.models import User
from emporium.carts.services import cart_item_add
from emporium.catalog.models import Product
from emporium.orders.services import order_place
from emporium.wishlists.services import wishlist_item_add
password = make_password({PASSWORD!r})
users = User.objects.bulk_create(
    User(username=f"shopper{{n}}", email=f"shopper{{n}}@bench.example", password=password)
    for n in range({count})
)
products = list(Product.objects.order_by("id").values_list("id", flat=True)[:200])
first = users[0]
order_ids = []
for number in range({orders}):
    for pid in products[number % 4: number % 4 + 1 + number % 2]:
        cart_item_add(user=first, product=Product.objects.get(pk=pid), quantity=1)
    placed = order_place(user_id=first.pk, shipping_address="1 Bench Street", phone="+4930000")
    order_ids.append(placed.pk)
for pid in products[:2]:
    cart_item_add(user=first, product=Product.objects.get(pk=pid), quantity=2)
    wishlist_item_add(user=first, product=Product.objects.get(pk=pid))
with open({str(out)!r}, "w") as handle:
    for user in users:
        handle.write(f"{{user.username}}\\t{{AccessToken.for_user(user)}}\\n")
    if order_ids:
        handle.write(f"#{{order_ids[0]}}\\n")
    handle.write("@" + ",".join(str(pid) for pid in products) + "\\n")
"""
    common.manage(env, "shell", "-c", code, cwd=cwd)


def fresh_tokens(env: dict[str, str], *, out: Path, cwd: Path | None = None) -> dict[str, str]:
    """A new access token for every ``shopper…`` (they live 15 minutes): username -> token.

    Made once the load phase may start, since waiting for the benchmark lock can
    outlast the tokens made while seeding.
    """
    code = f"""
from rest_framework_simplejwt.tokens import AccessToken
from emporium.accounts.models import User
with open({str(out)!r}, "w") as handle:
    for user in User.objects.filter(username__startswith="shopper").order_by("id"):
        handle.write(f"{{user.username}}\\t{{AccessToken.for_user(user)}}\\n")
"""
    common.manage(env, "shell", "-c", code, cwd=cwd)
    return dict(line.split("\t") for line in out.read_text().splitlines() if "\t" in line)
