from django.urls import path
from rest_framework.routers import SimpleRouter

from emporium.accounts import api

router = SimpleRouter()
router.register("users", api.UserViewSet, basename="user")

auth_urlpatterns = [
    path("register/", api.RegisterView.as_view(), name="auth-register"),
    path("login/", api.LoginView.as_view(), name="auth-login"),
    path("refresh/", api.RefreshView.as_view(), name="auth-refresh"),
    path("logout/", api.LogoutView.as_view(), name="auth-logout"),
    path("me/", api.MeView.as_view(), name="auth-me"),
    path("jwks/", api.JwksView.as_view(), name="auth-jwks"),
]

urlpatterns = router.urls
