from __future__ import annotations

from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request

from emporium.accounts.models import User


def authenticated_user(request: Request) -> User:
    """The request's user, typed as a real account; views call it behind IsAuthenticated."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated()
    return user
