from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from emporium.accounts.models import User
from emporium.dashboard.models import VIEW_DASHBOARD


class StaffAuthenticationForm(AuthenticationForm):
    """The dashboard's sign-in: the right password is not enough, the account must hold
    ``dashboard.view_dashboard``.

    Refusing here means a customer who tries it gets no session from this form.
    """

    error_messages = {
        **AuthenticationForm.error_messages,
        "not_staff": "This account is not a staff account; the dashboard is for staff only.",
    }

    def confirm_login_allowed(self, user: User) -> None:
        super().confirm_login_allowed(user)
        if not user.has_perm(VIEW_DASHBOARD):
            raise forms.ValidationError(self.error_messages["not_staff"], code="not_staff")
