"""Rate limits: login per IP and per account, registration per IP, writes per user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.throttling import SimpleRateThrottle

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginIPThrottle(SimpleRateThrottle):
    scope = "login_ip"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginAccountThrottle(SimpleRateThrottle):
    """Counts attempts per username, whatever address they come from."""

    scope = "login_account"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        data: Any = request.data
        username = data.get("username") if isinstance(data, dict) else None
        if not isinstance(username, str) or not username:
            return None
        return self.cache_format % {"scope": self.scope, "ident": username.strip().lower()[:150]}


class RegisterIPThrottle(LoginIPThrottle):
    scope = "register_ip"


class UserWriteThrottle(SimpleRateThrottle):
    """Bounds how fast one authenticated user can write; reads are not counted."""

    scope = "user_writes"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if request.method in _SAFE_METHODS or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
