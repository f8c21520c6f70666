from __future__ import annotations

from django.db.models import QuerySet

from emporium.wishlists.models import Wishlist, WishlistItem


def wishlist_items(*, wishlist: Wishlist) -> QuerySet[WishlistItem]:
    return (
        WishlistItem.objects.filter(wishlist=wishlist)
        .select_related("product")
        .order_by("-created_at", "-id")
    )
