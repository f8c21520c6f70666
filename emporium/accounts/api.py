from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from emporium.accounts import selectors, services, tokens
from emporium.accounts.auth import authenticated_user
from emporium.accounts.models import User
from emporium.accounts.serializers import (
    AdminUserSerializer,
    AdminUserUpdateSerializer,
    LoginSerializer,
    LogoutSerializer,
    ProfileUpdateSerializer,
    RefreshSerializer,
    RegisterSerializer,
    UserSerializer,
)
from emporium.core.permissions import ActionPermissions, RequiredPermissions
from emporium.core.throttling import LOGIN_THROTTLES, RegisterIPThrottle


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
    """Exchanges username and password for an access and a refresh token (a new sign-in)."""

    authentication_classes = ()
    throttle_classes = list(LOGIN_THROTTLES)
    serializer_class = LoginSerializer


class RefreshView(TokenRefreshView):
    """Exchanges a refresh token, once, for a new pair; a reused token ends its sign-in."""

    authentication_classes = ()
    serializer_class = RefreshSerializer


class JwksView(APIView):
    """The public keys that verify this deployment's tokens (RFC 7517 JSON Web Key Set)."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes: list[type] = []

    @extend_schema(responses={200: OpenApiResponse(description="A JSON Web Key Set.")})
    def get(self, request: Request) -> Response:
        response = Response(tokens.jwks())
        response["Cache-Control"] = "public, max-age=300"
        return response


class LogoutView(APIView):
    """Revokes a refresh token; the short-lived access token expires on its own."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    @extend_schema(
        request=LogoutSerializer,
        responses={204: None, 401: OpenApiResponse(description="The refresh token is not valid.")},
    )
    def post(self, request: Request) -> Response:
        serializer = LogoutSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.refresh_token_revoke(token=serializer.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """The caller's own account, read from its row (the request's user carries only its state)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=UserSerializer)
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(selectors.user_get(pk=authenticated_user(request).pk)).data)

    @extend_schema(request=ProfileUpdateSerializer, responses=UserSerializer)
    def patch(self, request: Request) -> Response:
        serializer = ProfileUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        user = services.user_update_profile(
            user=selectors.user_get(pk=authenticated_user(request).pk),
            **serializer.validated_data,
        )
        return Response(UserSerializer(user).data)


class UserViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet[User],
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
        user = services.user_update_by_admin(
            actor=authenticated_user(request), user=user, **serializer.validated_data
        )
        return Response(AdminUserSerializer(user).data)
