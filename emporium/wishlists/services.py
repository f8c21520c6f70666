from __future__ import annotations

from django.db import IntegrityError, transaction

from emporium.accounts.models import User
from emporium.catalog.models import Product
from emporium.wishlists.models import Wishlist, WishlistItem


def wishlist_get_or_create(*, user: User) -> Wishlist:
    wishlist = Wishlist.objects.filter(user=user).first()
    if wishlist is not None:
        return wishlist
    try:
        with transaction.atomic():
            return Wishlist.objects.create(user=user)
    except IntegrityError:
        return Wishlist.objects.get(user=user)


def wishlist_item_add(*, user: User, product: Product) -> tuple[WishlistItem, bool]:
    """Adds a product once; adding it again returns the existing line (created=False)."""
    wishlist = wishlist_get_or_create(user=user)
    existing = WishlistItem.objects.filter(wishlist=wishlist, product=product).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return WishlistItem.objects.create(wishlist=wishlist, product=product), True
    except IntegrityError:
        return WishlistItem.objects.get(wishlist=wishlist, product=product), False


def wishlist_item_remove(*, item: WishlistItem) -> None:
    item.delete()
