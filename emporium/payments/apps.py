from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "emporium.payments"
    label = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        # Registers this app's outbox event handlers with the relay.
        from emporium.payments import tasks  # noqa: F401
