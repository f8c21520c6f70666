import math
from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from emporium.accounts import services
from emporium.accounts.models import User
from emporium.accounts.revocation import user_access_revoked
from emporium.core.throttling import login_attempt_wait


@admin.register(User)
class UserAdmin(DjangoUserAdmin[User]):
    list_display = ["username", "email", "first_name", "last_name", "is_staff", "created_at"]
    list_filter = ["is_staff", "is_superuser", "is_active", "created_at"]
    search_fields = ["username", "email", "first_name", "last_name"]
    readonly_fields = ["created_at", "updated_at", "last_login", "date_joined"]

    # Who may change which account is the services' rule (user_change_authorize);
    # the admin asks it before showing a change form and before saving one.
    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or services.user_may_change(actor=request.user, target=obj)  # type: ignore[arg-type]

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if not super().has_delete_permission(request, obj):
            return False
        return obj is None or services.user_may_change(actor=request.user, target=obj)  # type: ignore[arg-type]

    # The admin writes users itself; deactivating or deleting one here must still
    # close the account's WebSockets, as the services do.
    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        try:
            services.user_change_authorize(
                actor=request.user,  # type: ignore[arg-type]
                target=obj,
                fields=form.changed_data,
                groups=form.cleaned_data.get("groups"),
            )
        except services.AccountChangeForbidden as refused:
            raise PermissionDenied(refused.message) from None
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            user_access_revoked(user_id=obj.pk)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        self.delete_queryset(request, User.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        try:
            with transaction.atomic():  # all the selected accounts, or none of them
                for user in queryset:
                    services.user_delete(user=user, actor=request.user)  # type: ignore[arg-type]
        except services.AccountChangeForbidden as refused:
            raise PermissionDenied(refused.message) from None


@never_cache
@csrf_protect
def admin_login(
    request: HttpRequest, extra_context: dict[str, object] | None = None
) -> HttpResponse:
    """The admin site's sign-in form under the API login's limits, on the same counters.

    Each POST counts as one attempt per address and per account, whatever its
    outcome; a refused attempt gets 429 with Retry-After and is never checked
    against the password.
    """
    if request.method == "POST":
        wait = login_attempt_wait(request)
        if wait is not None:
            seconds = math.ceil(wait)
            response = TemplateResponse(
                request,
                "accounts/admin_login_throttled.html",
                {**admin.site.each_context(request), "wait_seconds": seconds},
                status=429,
            )
            response["Retry-After"] = str(seconds)
            return response
    return admin.site.login(request, extra_context)
