"""The cart services: one cart per user, merged lines, stock checked on every write."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from emporium.carts import selectors, services
from emporium.carts.models import CartItem, ShoppingCart
from emporium.catalog.models import Product
from emporium.core.tests.factories import ProductFactory, UserFactory


@pytest.mark.django_db
class TestCartGetOrCreate:
    def test_creates_once_and_then_returns_the_same_cart(self) -> None:
        user = UserFactory()

        first = services.cart_get_or_create(user=user)
        second = services.cart_get_or_create(user=user)

        assert first.pk == second.pk
        assert ShoppingCart.objects.filter(user=user).count() == 1

    def test_each_user_gets_their_own_cart(self) -> None:
        first = services.cart_get_or_create(user=UserFactory())
        second = services.cart_get_or_create(user=UserFactory())

        assert first.pk != second.pk
        assert ShoppingCart.objects.count() == 2


@pytest.mark.django_db
class TestCartItemAdd:
    def test_adds_a_line_and_creates_the_cart(self) -> None:
        user = UserFactory()
        product = ProductFactory(stock_quantity=3)

        item = services.cart_item_add(user=user, product=product, quantity=3)

        assert (item.cart.user_id, item.product_id, item.quantity) == (user.pk, product.pk, 3)
        assert CartItem.objects.count() == 1

    def test_merges_into_the_existing_line(self) -> None:
        user = UserFactory()
        product = ProductFactory(stock_quantity=10)
        first = services.cart_item_add(user=user, product=product, quantity=4)

        merged = services.cart_item_add(user=user, product=product, quantity=6)

        assert merged.pk == first.pk
        assert list(CartItem.objects.values_list("quantity", flat=True)) == [10]

    def test_checks_the_stock_in_the_database_not_the_stale_object(self) -> None:
        user = UserFactory()
        product = ProductFactory(stock_quantity=10)
        Product.objects.filter(pk=product.pk).update(stock_quantity=1)

        with pytest.raises(services.InsufficientStock) as caught:
            services.cart_item_add(user=user, product=product, quantity=2)

        assert caught.value.details == {"product": product.pk, "requested": 2, "available": 1}
        assert CartItem.objects.count() == 0

    def test_merge_over_stock_raises_and_keeps_the_line(self) -> None:
        user = UserFactory()
        product = ProductFactory(name="Mug", stock_quantity=5)
        services.cart_item_add(user=user, product=product, quantity=5)

        with pytest.raises(services.InsufficientStock) as caught:
            services.cart_item_add(user=user, product=product, quantity=1)

        assert caught.value.status_code == 409
        assert caught.value.code == "insufficient_stock"
        assert caught.value.message == "Only 5 of 'Mug' in stock; 6 requested."
        assert list(CartItem.objects.values_list("quantity", flat=True)) == [5]


@pytest.mark.django_db
class TestCartItemSetQuantityRemoveClear:
    def test_set_quantity(self) -> None:
        item = services.cart_item_add(
            user=UserFactory(), product=ProductFactory(stock_quantity=9), quantity=1
        )

        updated = services.cart_item_set_quantity(item=item, quantity=9)

        assert updated.quantity == 9
        assert CartItem.objects.get(pk=item.pk).quantity == 9

    def test_set_quantity_over_stock_raises_and_keeps_the_quantity(self) -> None:
        item = services.cart_item_add(
            user=UserFactory(), product=ProductFactory(stock_quantity=2), quantity=1
        )

        with pytest.raises(services.InsufficientStock):
            services.cart_item_set_quantity(item=item, quantity=3)

        assert CartItem.objects.get(pk=item.pk).quantity == 1

    def test_remove_and_clear(self) -> None:
        user = UserFactory()
        other_user = UserFactory()
        first = services.cart_item_add(user=user, product=ProductFactory(), quantity=1)
        services.cart_item_add(user=user, product=ProductFactory(), quantity=1)
        services.cart_item_add(user=other_user, product=ProductFactory(), quantity=1)

        services.cart_item_remove(item=first)
        assert CartItem.objects.filter(cart__user=user).count() == 1

        services.cart_clear(cart=services.cart_get_or_create(user=user))
        assert CartItem.objects.filter(cart__user=user).count() == 0
        assert CartItem.objects.filter(cart__user=other_user).count() == 1


@pytest.mark.django_db
def test_subtotal_sums_the_line_totals_exactly() -> None:
    user = UserFactory()
    services.cart_item_add(user=user, product=ProductFactory(price=Decimal("0.10")), quantity=3)
    services.cart_item_add(user=user, product=ProductFactory(price=Decimal("0.20")), quantity=1)
    cart = services.cart_get_or_create(user=user)

    subtotal = selectors.cart_subtotal(items=list(selectors.cart_items(cart=cart)))

    assert subtotal == Decimal("0.50")
    assert str(subtotal) == "0.50"
    assert selectors.cart_subtotal(items=[]) == Decimal("0.00")


@pytest.mark.django_db(transaction=True)
def test_parallel_adds_of_one_product_never_exceed_the_stock(database_url: str) -> None:
    """Two first adds race; the unique line and the re-check keep the cart within stock."""
    assert connection.vendor == "postgresql"
    user = UserFactory()
    product = ProductFactory(stock_quantity=5)
    services.cart_get_or_create(user=user)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def add() -> None:
        try:
            barrier.wait(timeout=5)
            services.cart_item_add(user=user, product=product, quantity=3)
            outcomes.append("added")
        except services.InsufficientStock:
            outcomes.append("insufficient_stock")
        finally:
            connection.close()

    threads = [threading.Thread(target=add) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(outcomes) == ["added", "insufficient_stock"]
    assert list(CartItem.objects.values_list("quantity", flat=True)) == [3]
