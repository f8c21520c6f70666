from django.conf import settings
from django.db import models

from emporium.catalog.models import Product
from emporium.core.models import TimeStampedModel


class Wishlist(TimeStampedModel):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="wishlist"
    )

    def __str__(self) -> str:
        return f"wishlist of {self.user_id}"


class WishlistItem(models.Model):
    wishlist = models.ForeignKey(Wishlist, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="wishlist_items")
    created_at = models.DateTimeField(auto_now_add=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["wishlist", "product"], name="wishlist_item_one_per_product"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} in {self.wishlist_id}"
