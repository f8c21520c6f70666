"""order_list_for_user decides who sees which orders and in what order."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from emporium.core.tests.factories import OrderFactory, StaffFactory, UserFactory
from emporium.orders.models import Order
from emporium.orders.selectors import order_list_for_user

pytestmark = pytest.mark.django_db


def test_customer_gets_own_orders_newest_first_and_staff_get_all() -> None:
    customer = UserFactory()
    older = OrderFactory(user=customer)
    newer = OrderFactory(user=customer)
    Order.objects.filter(pk=older.pk).update(
        created_at=timezone.now() - datetime.timedelta(hours=1)
    )
    foreign = OrderFactory()

    own = list(order_list_for_user(user=customer).values_list("pk", flat=True))
    every = set(order_list_for_user(user=StaffFactory()).values_list("pk", flat=True))

    assert own == [newer.pk, older.pk]
    assert every == {older.pk, newer.pk, foreign.pk}


def test_ordering_ends_with_the_primary_key_for_keyset_pagination() -> None:
    assert order_list_for_user(user=UserFactory()).query.order_by == ("-created_at", "-id")
