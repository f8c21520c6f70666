from __future__ import annotations

from typing import Any, cast

from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenObtainSerializer

from emporium.accounts import services
from emporium.accounts.models import User
from emporium.core.representation import row_shape


class RegisterSerializer(serializers.Serializer[Any]):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(write_only=True, max_length=128, trim_whitespace=False)
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)


class UserSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "is_staff",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


# UserSerializer's fields as columns of the account's row (alias "u") and their
# rendering: the signed-in profile read (accounts.fast_path) writes exactly these.
USER_SHAPE = row_shape(User, UserSerializer.Meta.fields, alias="u")


class ProfileUpdateSerializer(serializers.Serializer[Any]):
    email = serializers.EmailField(max_length=254, required=False)
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)


class AdminUserSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "is_staff",
            "is_superuser",
            "is_active",
            "last_login",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AdminUserUpdateSerializer(serializers.Serializer[Any]):
    is_staff = serializers.BooleanField(required=False)
    is_active = serializers.BooleanField(required=False)
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)


class LogoutSerializer(serializers.Serializer[Any]):
    refresh = serializers.CharField()


class TokenPairSerializer(serializers.Serializer[Any]):
    access = serializers.CharField(read_only=True)
    refresh = serializers.CharField(read_only=True)


class LoginSerializer(TokenObtainSerializer):
    """simplejwt's credential check (``authenticate``, active accounts only), then a new sign-in."""

    access = serializers.CharField(read_only=True)
    refresh = serializers.CharField(read_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        super().validate(attrs)  # refuses unless self.user is an active account
        pair = services.token_pair_issue(user=cast(User, self.user))
        return {"refresh": pair.refresh, "access": pair.access}


class RefreshSerializer(serializers.Serializer[Any]):
    """Exchanges a refresh token once (rotation with reuse detection, see the service)."""

    refresh = serializers.CharField()
    access = serializers.CharField(read_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        pair = services.refresh_token_rotate(token=attrs["refresh"])
        return {"refresh": pair.refresh, "access": pair.access}
