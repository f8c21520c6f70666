from rest_framework.routers import SimpleRouter

from emporium.payments import api

router = SimpleRouter()
router.register("payments", api.PaymentViewSet, basename="payment")

urlpatterns = router.urls
