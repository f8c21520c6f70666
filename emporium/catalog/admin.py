from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from emporium.catalog import services
from emporium.catalog.models import Category, Product


class CategoryAdminForm(forms.ModelForm[Category]):
    class Meta:
        model = Category
        fields = ["name", "parent"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        parent = data.get("parent")
        # The services refuse a cycle too; checking here turns it into a form error.
        if self.instance.pk and parent is not None and parent.path.startswith(self.instance.path):
            raise forms.ValidationError(
                {"parent": "A category cannot move under itself or one of its descendants."}
            )
        return data


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin[Category]):
    form = CategoryAdminForm
    list_display = ["name", "parent", "depth", "path", "created_at"]
    list_filter = ["depth"]
    search_fields = ["name"]
    readonly_fields = ["path", "depth", "created_at", "updated_at"]
    raw_id_fields = ["parent"]

    def save_model(
        self, request: HttpRequest, obj: Category, form: ModelForm[Category], change: bool
    ) -> None:
        # Paths and cycle checks live in the services; the admin goes through them too.
        if change:
            services.category_update(
                category=obj, name=form.cleaned_data["name"], parent=form.cleaned_data["parent"]
            )
        else:
            created = services.category_create(
                name=form.cleaned_data["name"], parent=form.cleaned_data["parent"]
            )
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Category) -> None:
        services.category_delete(category=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Category]) -> None:
        super().delete_queryset(request, queryset)
        services.category_cache_invalidate()


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin[Product]):
    list_display = ["name", "sku", "price", "stock_quantity", "category", "review_count"]
    list_filter = ["category__depth", "created_at"]
    search_fields = ["name", "sku"]
    readonly_fields = ["review_count", "rating_total", "created_at", "updated_at"]
    raw_id_fields = ["category"]
    list_select_related = ["category"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        return super().get_queryset(request).select_related("category")

    # The admin saves products itself; these keep the catalog cache in step.
    def save_model(
        self, request: HttpRequest, obj: Product, form: ModelForm[Product], change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        services.product_cache_invalidate(product_ids=[obj.pk])

    def delete_model(self, request: HttpRequest, obj: Product) -> None:
        services.product_delete(product=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        product_ids = list(queryset.values_list("pk", flat=True))
        super().delete_queryset(request, queryset)
        services.product_cache_invalidate(product_ids=product_ids)
