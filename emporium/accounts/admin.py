import math

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from emporium.accounts.models import User
from emporium.core.throttling import login_attempt_wait


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "first_name", "last_name", "is_staff", "created_at"]
    list_filter = ["is_staff", "is_superuser", "is_active", "created_at"]
    search_fields = ["username", "email", "first_name", "last_name"]
    readonly_fields = ["created_at", "updated_at", "last_login", "date_joined"]


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
