"""Device authentication: ``Authorization: Device <token>``, used by telemetry ingestion only."""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from emporium.delivery.models import CourierDevice

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

KEYWORD = "Device"
TOKEN_PREFIX = "dev_"  # noqa: S105 (a public prefix, not a secret)


def device_token_generate() -> str:
    """A new secret of 256 random bits; the prefix lets secret scanners recognise it."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def device_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DeviceTokenAuthentication(BaseAuthentication):
    """Finds the active device whose token hash matches; the device is ``request.auth``.

    ``request.user`` stays anonymous: a device is not a user and must never
    pass a permission meant for one.
    """

    def authenticate(self, request: Request) -> tuple[AnonymousUser, CourierDevice] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("The Device header must be 'Device <token>'.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The device token is not valid.") from None
        device = (
            CourierDevice.objects.filter(token_hash=device_token_hash(token), is_active=True)
            .only("pk", "name")
            .first()
        )
        if device is None:
            raise AuthenticationFailed("The device token is not valid or has been revoked.")
        return AnonymousUser(), device

    def authenticate_header(self, request: Request) -> str:
        # Makes a missing or bad token a 401 (with this challenge), not a 403.
        return KEYWORD


class IsCourierDevice(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, CourierDevice)
