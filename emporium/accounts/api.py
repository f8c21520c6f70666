from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from emporium.accounts import selectors, services
from emporium.accounts.auth import authenticated_user
from emporium.accounts.models import User
from emporium.accounts.serializers import (
    AdminUserSerializer,
    AdminUserUpdateSerializer,
    LogoutSerializer,
    ProfileUpdateSerializer,
    RegisterSerializer,
    UserSerializer,
)
from emporium.core.permissions import ActionPermissions, RequiredPermissions
from emporium.core.throttling import LoginAccountThrottle, LoginIPThrottle, RegisterIPThrottle


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [RegisterIPThrottle]

    @extend_schema(request=RegisterSerializer, responses={201: UserSerializer})
    def post(self, request: Request) -> Response:
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_register(**serializer.validated_data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class LoginView(TokenObtainPairView):
    """Exchanges username and password for an access and a refresh token."""

    authentication_classes = ()
    throttle_classes = [LoginIPThrottle, LoginAccountThrottle]


class RefreshView(TokenRefreshView):
    authentication_classes = ()

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except User.DoesNotExist:
            # simplejwt looks the token's account up with .get(): a token that
            # outlived its account must be refused like a deactivated one, not crash.
            raise AuthenticationFailed(
                "No active account found for the given token.", "no_active_account"
            ) from None


class LogoutView(APIView):
    """Revokes a refresh token; the short-lived access token expires on its own."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(request=LogoutSerializer, responses={204: None})
    def post(self, request: Request) -> Response:
        serializer = LogoutSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.refresh_token_revoke(token=serializer.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=UserSerializer)
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request.user).data)

    @extend_schema(request=ProfileUpdateSerializer, responses=UserSerializer)
    def patch(self, request: Request) -> Response:
        serializer = ProfileUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        user = services.user_update_profile(
            user=authenticated_user(request), **serializer.validated_data
        )
        return Response(UserSerializer(user).data)


class UserViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Accounts: support and admins read them; admins change them."""

    serializer_class = AdminUserSerializer
    lookup_value_regex = r"\d+"
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {
        "list": ("accounts.view_user",),
        "retrieve": ("accounts.view_user",),
        "partial_update": ("accounts.change_user",),
    }
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.user_list()

    @extend_schema(request=AdminUserUpdateSerializer, responses=AdminUserSerializer)
    def partial_update(self, request: Request, *args: object, **kwargs: object) -> Response:
        user = self.get_object()
        serializer = AdminUserUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        user = services.user_update_by_admin(user=user, **serializer.validated_data)
        return Response(AdminUserSerializer(user).data)
