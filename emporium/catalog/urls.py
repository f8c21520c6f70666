from rest_framework.routers import SimpleRouter

from emporium.catalog import api

router = SimpleRouter()
router.register("categories", api.CategoryViewSet, basename="category")
router.register("products", api.ProductViewSet, basename="product")

urlpatterns = router.urls
