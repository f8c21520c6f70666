from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "emporium.notifications"
    label = "notifications"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the triggers (outbox event handlers) with the relay.
        from emporium.notifications import tasks  # noqa: F401
