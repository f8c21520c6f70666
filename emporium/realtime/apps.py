from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "emporium.realtime"
    label = "realtime"
    verbose_name = "Real time"
