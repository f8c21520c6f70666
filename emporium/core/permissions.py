"""The API's permission check: each action names the model permissions it needs.

A view using ``ActionPermissions`` declares ``required_permissions``: for every
action of a viewset (``list``, ``create``, ``cancel``...) or every lower-case
HTTP method of a plain view, either ``PUBLIC`` (anyone, signed in or not), an
empty tuple (any signed-in account) or the ``"app_label.codename"`` model
permissions the account must hold, through its groups (the roles) or as a
superuser. ``is_staff`` plays no part: it only opens the admin site.

An action the table does not name is refused, so a new action is closed until
someone decides who may use it. HEAD needs what GET needs. OPTIONS, and a
method the view does not answer (405), need what reading the route needs, or a
signed-in account when it has no GET: neither runs anything.

Which rows an action may touch is not decided here: the selectors scope them
to their owner unless the account holds the model's view permission.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal

from rest_framework.permissions import BasePermission

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

PUBLIC: Final = "public"
AUTHENTICATED: Final[tuple[str, ...]] = ()

Requirement = tuple[str, ...] | Literal["public"]
RequiredPermissions = Mapping[str, Requirement]


def _answered(request: Request, view: APIView) -> bool:
    """Whether the view has a handler for the method (else it answers 405)."""
    method = (request.method or "").lower()
    return method in view.http_method_names and hasattr(view, method)


def action_name(request: Request, view: APIView) -> str:
    """The key of ``required_permissions`` this request is checked against."""
    action = getattr(view, "action", None)
    method = (request.method or "").lower()
    describes = method == "options" or action == "metadata" or not _answered(request, view)
    if describes:
        # Describing the route, or answering 405, reveals what reading it does.
        action_map: Mapping[str, str] = getattr(view, "action_map", None) or {}
        return action_map.get("get", "get")
    if action is None:
        return "get" if method == "head" else method
    return str(action)


def requirement_for(request: Request, view: APIView) -> Requirement | None:
    """What the request needs, or None when the view does not say (refused)."""
    table: RequiredPermissions | None = getattr(view, "required_permissions", None)
    if table is None:
        return None
    name = action_name(request, view)
    if name in table:
        return table[name]
    if request.method == "OPTIONS" or not _answered(request, view):
        return AUTHENTICATED
    return None


class ActionPermissions(BasePermission):
    """Grants a request when the account holds every permission its action needs."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        needed = requirement_for(request, view)
        if needed is None:
            return False
        if needed == PUBLIC:
            return True
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return all(user.has_perm(permission) for permission in needed)
