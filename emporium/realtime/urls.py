from django.urls import path

from emporium.realtime import api

urlpatterns = [
    path("orders/events/", api.OrderEventListView.as_view(), name="order-events"),
]
