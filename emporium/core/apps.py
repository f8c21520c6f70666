from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "emporium.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from emporium.core import checks  # noqa: F401 - registers the deploy checks
