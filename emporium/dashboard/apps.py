from django.apps import AppConfig


class DashboardConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "emporium.dashboard"

    def ready(self) -> None:
        # The dashboard listens to delivery and tells realtime who may open its
        # stream; neither of them imports the dashboard. Imported here, once
        # the models they load are ready (Django's rule for apps.py).
        from emporium.dashboard.collector import telemetry_points_record
        from emporium.dashboard.models import VIEW_DASHBOARD
        from emporium.delivery.hooks import points_stored_listen
        from emporium.realtime.providers import stream_permission_register

        points_stored_listen(lambda count: telemetry_points_record(count=count))
        stream_permission_register(stream="dashboard", permission=VIEW_DASHBOARD)
