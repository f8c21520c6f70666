from typing import Any

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower

from emporium.core.models import TimeStampedModel
from emporium.core.usernames import username_fold


class CaseInsensitiveUserManager(UserManager["User"]):
    def get_by_natural_key(self, username: str | None) -> "User":
        # Every spelling with the same fold ("Alice", "ALICE", full-width) finds
        # one account: the fold is unique, and the login limit counts per fold too.
        if not isinstance(username, str):
            raise self.model.DoesNotExist()
        return self.get(username_key=username_fold(username))


class UsernameKeyField(models.CharField[str, str]):
    """The username's fold, computed from the instance whenever it is written.

    ``pre_save`` runs for ``save()`` and for ``bulk_create()`` alike, so no way of
    inserting users can leave the key empty or stale.
    """

    def pre_save(self, model_instance: models.Model, add: bool) -> str:
        key = username_fold(model_instance.username)  # type: ignore[attr-defined]
        setattr(model_instance, self.attname, key)
        return key


class User(TimeStampedModel, AbstractUser):
    """A shop user. Usernames and e-mail addresses are unique regardless of case.

    ``username_key`` is the username's fold (``emporium.core.usernames``), kept
    by its field on every write; its unique index is what makes confusable
    spellings one name.
    """

    email = models.EmailField("email address", max_length=254)
    username_key = UsernameKeyField(max_length=150, editable=False)

    objects = CaseInsensitiveUserManager()  # type: ignore[misc]

    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(Lower("username"), name="user_username_ci_unique"),
            models.UniqueConstraint(fields=["username_key"], name="user_username_key_unique"),
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "username" in update_fields:
            kwargs["update_fields"] = {*update_fields, "username_key"}
        super().save(*args, **kwargs)


class TokenFamily(TimeStampedModel):
    """One sign-in: every refresh token descended from one login carries its id (``fam``).

    Only the newest refresh token of a family (``current_jti``) may be exchanged,
    and only once: the exchange is one conditional UPDATE, so of two requests
    racing with the same token exactly one wins. Presenting any older token
    means it was copied: the whole family is revoked (``revoked_at``).

    ``updated_at`` is when the family's newest refresh token was issued, or
    when it was revoked; a REFRESH_TOKEN_LIFETIME later no token of it can be
    exchanged any more and ``token_families_prune`` deletes the row.
    """

    id = models.UUIDField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="token_families")
    current_jti = models.CharField(max_length=64)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "revoked_at"], name="tokenfamily_user_revoked"),
            models.Index(fields=["updated_at"], name="tokenfamily_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.id}"
