from django.urls import path
from rest_framework.routers import SimpleRouter

from emporium.integrations.webhooks import api

router = SimpleRouter()
router.register("webhooks", api.SubscriptionViewSet, basename="webhook-subscription")

urlpatterns = [
    path(
        "webhooks/<int:webhooksubscription_pk>/deliveries/",
        api.DeliveryListView.as_view(),
        name="webhook-deliveries",
    ),
    path(
        "webhooks/<int:webhooksubscription_pk>/deliveries/<int:webhookdelivery_pk>/replay/",
        api.DeliveryReplayView.as_view(),
        name="webhook-delivery-replay",
    ),
    *router.urls,
]
