from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "emporium.orders"
    label = "orders"
    verbose_name = "Orders"
