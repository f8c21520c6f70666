from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "emporium.catalog"
    label = "catalog"
    verbose_name = "Catalog"
