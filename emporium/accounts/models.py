from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower

from emporium.core.models import TimeStampedModel


class CaseInsensitiveUserManager(UserManager["User"]):
    def get_by_natural_key(self, username: str | None) -> "User":
        # Usernames are unique regardless of case, so logging in as "Alice" finds "alice".
        return self.get(username__iexact=username)


class User(TimeStampedModel, AbstractUser):
    """A shop user. Usernames and e-mail addresses are unique regardless of case."""

    email = models.EmailField("email address", max_length=254)

    objects = CaseInsensitiveUserManager()  # type: ignore[misc]

    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(Lower("username"), name="user_username_ci_unique"),
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username
