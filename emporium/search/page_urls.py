from django.urls import path

from emporium.search import views

urlpatterns = [
    path("search/", views.search_page, name="search-page"),
    path("products/<int:product_id>/", views.product_page, name="product-page"),
]
