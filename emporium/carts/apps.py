from django.apps import AppConfig


class CartsConfig(AppConfig):
    name = "emporium.carts"
    label = "carts"
    verbose_name = "Carts"
