from django.urls import path

from emporium.notifications import api

urlpatterns = [
    path("notifications/", api.NotificationListView.as_view(), name="notifications"),
    path(
        "notifications/unread-count/",
        api.UnreadCountView.as_view(),
        name="notifications-unread-count",
    ),
    path(
        "notifications/<int:pk>/read/", api.NotificationReadView.as_view(), name="notification-read"
    ),
    path("notifications/read-all/", api.ReadAllView.as_view(), name="notifications-read-all"),
    path(
        "notifications/preferences/",
        api.PreferencesView.as_view(),
        name="notification-preferences",
    ),
    path(
        "notifications/broadcasts/",
        api.BroadcastCreateView.as_view(),
        name="notification-broadcasts",
    ),
    path(
        "notifications/broadcasts/<int:pk>/",
        api.BroadcastDetailView.as_view(),
        name="notification-broadcast",
    ),
    path(
        "notifications/broadcasts/<int:pk>/cancel/",
        api.BroadcastCancelView.as_view(),
        name="notification-broadcast-cancel",
    ),
]
