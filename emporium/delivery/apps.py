from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "emporium.delivery"
    label = "delivery"
    verbose_name = "Delivery"

    def ready(self) -> None:
        # Models are loaded only now, so the module that queries them is too.
        from emporium.delivery.streams import streams_register

        streams_register()
