from django.contrib import admin

from emporium.integrations.models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin[OutboxEvent]):
    list_display = [
        "id",
        "event_type",
        "aggregate_type",
        "aggregate_id",
        "created_at",
        "published_at",
        "attempts",
    ]
    list_filter = ["event_type", "aggregate_type", "created_at"]
    search_fields = ["id", "aggregate_id", "event_type"]
    readonly_fields = [
        "id",
        "event_type",
        "aggregate_type",
        "aggregate_id",
        "payload",
        "created_at",
        "published_at",
        "attempts",
        "last_error",
    ]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
