from django.urls import path

from emporium.dashboard import views

urlpatterns = [
    path("", views.dashboard_page, name="dashboard"),
    path("login/", views.DashboardLoginView.as_view(), name="dashboard-login"),
    path("logout/", views.DashboardLogoutView.as_view(), name="dashboard-logout"),
]
