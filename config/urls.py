from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from emporium.accounts.admin import admin_login
from emporium.accounts.api import JwksView
from emporium.accounts.urls import auth_urlpatterns
from emporium.core.views import home
from emporium.observability import views as observability_views


class ApiDocsView(SpectacularSwaggerSplitView):
    """The Swagger UI page: GET only (OPTIONS would need a template the page does not have)."""

    http_method_names = ["get", "head"]


api_urlpatterns: list[URLPattern | URLResolver] = [
    path("auth/", include(auth_urlpatterns)),
    path("", include("emporium.accounts.urls")),
    path("", include("emporium.catalog.urls")),
    path("", include("emporium.search.urls")),
    path("", include("emporium.reviews.urls")),
    path("", include("emporium.carts.urls")),
    path("", include("emporium.wishlists.urls")),
    path("", include("emporium.realtime.urls")),
    path("", include("emporium.notifications.channels.urls")),
    path("", include("emporium.notifications.urls")),
    path("", include("emporium.orders.urls")),
    path("", include("emporium.payments.urls")),
    path("", include("emporium.delivery.urls")),
    path("", include("emporium.integrations.webhooks.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", ApiDocsView.as_view(url_name="schema"), name="api-docs"),
]

urlpatterns = [
    path("api/", include(api_urlpatterns)),
    # The usual place token verifiers look for the keys; the same view as /api/auth/jwks/.
    path(".well-known/jwks.json", JwksView.as_view(schema=None), name="jwks"),
    path("health/", include("emporium.observability.urls")),
    # The spellings an orchestrator expects, and Prometheus's scrape path.
    path("healthz", observability_views.LiveView.as_view(), name="healthz"),
    path("readyz", observability_views.ReadyView.as_view(), name="readyz"),
    path("metrics", observability_views.metrics, name="metrics"),
    # Before the admin's own URLs: its sign-in form under the API login's limits.
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("dashboard/", include("emporium.dashboard.urls")),
    path("", include("emporium.search.page_urls")),
    path("", home, name="home"),
]

handler400 = "emporium.core.views.bad_request"
handler403 = "emporium.core.views.permission_denied"
handler404 = "emporium.core.views.not_found"
handler500 = "emporium.core.views.server_error"
