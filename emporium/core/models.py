from django.conf import settings
from django.db import models


class TimeStampedModel(models.Model):
    """Adds creation and modification times to every domain row."""

    created_at = models.DateTimeField(auto_now_add=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True, editable=False)

    class Meta:
        abstract = True


class IdempotencyKey(models.Model):
    """One client-chosen key and, once the request finished, the response it got.

    Keys are scoped to the authenticated user. While ``completed_at`` is null the
    request is in flight: a twin gets 409 until ``locked_until`` passes, after
    which a retry may take the key over (the first attempt died mid-way and its
    transaction rolled back, so nothing was done under it).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    key = models.CharField(max_length=255)
    scope = models.CharField(max_length=100)  # which operation, e.g. "orders.place"
    request_fingerprint = models.CharField(max_length=64)
    locked_until = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True, default="")
    response_body = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key}"
