from django.urls import path

from emporium.wishlists import api

urlpatterns = [
    path("wishlist/", api.WishlistView.as_view(), name="wishlist"),
    path("wishlist/items/", api.WishlistItemListView.as_view(), name="wishlist-item-list"),
    path(
        "wishlist/items/<int:pk>/",
        api.WishlistItemDetailView.as_view(),
        name="wishlist-item-detail",
    ),
]
