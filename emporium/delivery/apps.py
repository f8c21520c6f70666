from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "emporium.delivery"
    label = "delivery"
    verbose_name = "Delivery"
