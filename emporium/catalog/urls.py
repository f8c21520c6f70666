from rest_framework.routers import SimpleRouter

from emporium.catalog import api
from emporium.catalog.imports.urls import urlpatterns as import_urlpatterns

router = SimpleRouter()
router.register("categories", api.CategoryViewSet, basename="category")
router.register("products", api.ProductViewSet, basename="product")

urlpatterns = [*import_urlpatterns, *router.urls]
