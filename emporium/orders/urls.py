from rest_framework.routers import SimpleRouter

from emporium.orders import api

router = SimpleRouter()
router.register("orders", api.OrderViewSet, basename="order")

urlpatterns = router.urls
