from __future__ import annotations

from django.db.models import QuerySet

from emporium.wishlists.models import Wishlist, WishlistItem

# How a wishlist's lines are listed: newest first.
WISHLIST_ITEM_ORDERING = ("-created_at", "-id")


def wishlist_items(*, wishlist: Wishlist) -> QuerySet[WishlistItem]:
    return (
        WishlistItem.objects.filter(wishlist=wishlist)
        .select_related("product")
        .order_by(*WISHLIST_ITEM_ORDERING)
    )
