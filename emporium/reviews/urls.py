from django.urls import path

from emporium.reviews import api

review_list = api.ProductReviewViewSet.as_view({"get": "list", "post": "create"})
review_detail = api.ProductReviewViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)

urlpatterns = [
    path("products/<int:product_pk>/reviews/", review_list, name="product-review-list"),
    path(
        "products/<int:product_pk>/reviews/<int:pk>/", review_detail, name="product-review-detail"
    ),
]
