from django.urls import path

from emporium.catalog.imports import api

# Listed before the products router, whose detail route would take "imports" for an id.
urlpatterns = [
    path("products/imports/", api.ProductImportListView.as_view(), name="product-import-list"),
    path(
        "products/imports/<int:pk>/",
        api.ProductImportDetailView.as_view(),
        name="product-import-detail",
    ),
    path(
        "products/imports/<int:pk>/errors.csv",
        api.ProductImportErrorsView.as_view(),
        name="product-import-errors",
    ),
    path(
        "products/imports/<int:pk>/cancel/",
        api.ProductImportCancelView.as_view(),
        name="product-import-cancel",
    ),
]
