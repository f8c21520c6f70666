from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "emporium.observability"
    label = "observability"
    verbose_name = "Observability"
