from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "emporium.demo"
    label = "demo"
    verbose_name = "Demo data"
