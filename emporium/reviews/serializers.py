from typing import Any

from rest_framework import serializers

from emporium.reviews.models import Review


class ReviewSerializer(serializers.ModelSerializer[Review]):
    username = serializers.CharField(source="user.username", read_only=True)
    rating = serializers.IntegerField(min_value=1, max_value=5)

    class Meta:
        model = Review
        fields = [
            "id",
            "product",
            "user",
            "username",
            "rating",
            "comment",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "product", "user", "username", "created_at", "updated_at"]


class ReviewUpdateSerializer(serializers.Serializer[Any]):
    rating = serializers.IntegerField(min_value=1, max_value=5, required=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=5000)
