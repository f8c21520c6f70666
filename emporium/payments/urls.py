from django.urls import path
from rest_framework.routers import SimpleRouter

from emporium.payments import api

router = SimpleRouter()
router.register("payments", api.PaymentViewSet, basename="payment")

urlpatterns = [
    path("payments/webhook/", api.PaymentWebhookView.as_view(), name="payment-webhook"),
    path("orders/<int:order_pk>/payments/", api.OrderPaymentView.as_view(), name="order-payments"),
    *router.urls,
]
