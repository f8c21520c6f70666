from django.urls import path

from emporium.carts import api

urlpatterns = [
    path("cart/", api.CartView.as_view(), name="cart"),
    path("cart/items/", api.CartItemListView.as_view(), name="cart-item-list"),
    path("cart/items/<int:pk>/", api.CartItemDetailView.as_view(), name="cart-item-detail"),
]
