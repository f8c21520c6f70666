from __future__ import annotations

from django.db import IntegrityError, transaction

from emporium.accounts.models import User
from emporium.carts.models import CartItem, ShoppingCart
from emporium.catalog.models import Product
from emporium.core.errors import Conflict


class InsufficientStock(Conflict):
    code = "insufficient_stock"


def cart_get_or_create(*, user: User) -> ShoppingCart:
    """The user's one cart, created on first use; two first uses racing still make one."""
    cart = ShoppingCart.objects.filter(user=user).first()
    if cart is not None:
        return cart
    try:
        with transaction.atomic():
            return ShoppingCart.objects.create(user=user)
    except IntegrityError:
        return ShoppingCart.objects.get(user=user)


def _check_stock(*, product: Product, quantity: int) -> None:
    if quantity > product.stock_quantity:
        raise InsufficientStock(
            f"Only {product.stock_quantity} of {product.name!r} in stock; {quantity} requested.",
            details={
                "product": product.pk,
                "requested": quantity,
                "available": product.stock_quantity,
            },
        )


def cart_item_add(*, user: User, product: Product, quantity: int) -> CartItem:
    """Adds ``quantity`` of a product, merging with a line already in the cart."""
    cart = cart_get_or_create(user=user)
    with transaction.atomic():
        item = CartItem.objects.select_for_update().filter(cart=cart, product=product).first()
        product.refresh_from_db(fields=["stock_quantity"])
        total = quantity + (item.quantity if item else 0)
        _check_stock(product=product, quantity=total)
        if item is None:
            try:
                with transaction.atomic():
                    return CartItem.objects.create(cart=cart, product=product, quantity=quantity)
            except IntegrityError:
                # A parallel add created the line first; merge into it.
                item = CartItem.objects.select_for_update().get(cart=cart, product=product)
                total = quantity + item.quantity
                _check_stock(product=product, quantity=total)
        item.quantity = total
        item.save(update_fields=["quantity", "updated_at"])
    return item


def cart_item_set_quantity(*, item: CartItem, quantity: int) -> CartItem:
    with transaction.atomic():
        item = CartItem.objects.select_for_update().select_related("product").get(pk=item.pk)
        _check_stock(product=item.product, quantity=quantity)
        item.quantity = quantity
        item.save(update_fields=["quantity", "updated_at"])
    return item


def cart_item_remove(*, item: CartItem) -> None:
    item.delete()


def cart_clear(*, cart: ShoppingCart) -> None:
    CartItem.objects.filter(cart=cart).delete()
