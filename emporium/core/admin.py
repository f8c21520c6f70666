from django.contrib import admin
from django.http import HttpRequest

from emporium.core.models import IdempotencyKey


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin[IdempotencyKey]):
    """Stored Idempotency-Key answers, for support: read-only, deletable to release a key."""

    list_display = [
        "key",
        "user",
        "scope",
        "response_status",
        "created_at",
        "completed_at",
        "expires_at",
    ]
    list_filter = ["scope", "response_status", "created_at"]
    search_fields = ["key", "user__username"]
    raw_id_fields = ["user"]
    list_select_related = ["user"]
    exclude = ["response_body"]
    readonly_fields = [
        "user",
        "key",
        "scope",
        "request_fingerprint",
        "locked_until",
        "completed_at",
        "response_status",
        "response_content_type",
        "created_at",
        "expires_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
