from django.urls import path

from emporium.notifications.channels import api

urlpatterns = [
    path(
        "notifications/devices/",
        api.DeviceTokenView.as_view(),
        name="notification-devices",
    ),
    path(
        "notifications/dead-letters/",
        api.DeadLetterListView.as_view(),
        name="notification-dead-letters",
    ),
    path(
        "notifications/dead-letters/replay/",
        api.DeadLetterBulkReplayView.as_view(),
        name="notification-dead-letters-replay",
    ),
    path(
        "notifications/dead-letters/<int:pk>/replay/",
        api.DeadLetterReplayView.as_view(),
        name="notification-dead-letter-replay",
    ),
]
