from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "emporium.orders"
    label = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        # Registers this app's outbox event handlers with the relay.
        from emporium.orders import tasks  # noqa: F401
