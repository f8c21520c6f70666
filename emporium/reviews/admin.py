from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from emporium.reviews import services
from emporium.reviews.models import Review


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin[Review]):
    list_display = ["product", "user", "rating", "created_at"]
    list_filter = ["rating", "created_at"]
    search_fields = ["product__name", "product__sku", "user__username", "comment"]
    raw_id_fields = ["product", "user"]
    list_select_related = ["product", "user"]
    # Ratings feed the product counters, so the admin moderates (edits the
    # comment, deletes) and never writes a rating around the services.
    readonly_fields = ["product", "user", "rating", "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Review) -> None:
        services.review_delete(review=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Review]) -> None:
        for review in queryset:
            services.review_delete(review=review)
