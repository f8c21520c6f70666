from django.apps import AppConfig


class WishlistsConfig(AppConfig):
    name = "emporium.wishlists"
    label = "wishlists"
    verbose_name = "Wishlists"
