from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from emporium.accounts.models import User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "first_name", "last_name", "is_staff", "created_at"]
    list_filter = ["is_staff", "is_superuser", "is_active", "created_at"]
    search_fields = ["username", "email", "first_name", "last_name"]
    readonly_fields = ["created_at", "updated_at", "last_login", "date_joined"]
