"""Every registered admin renders: changelist (plain, searched, filtered), add,
change, delete confirmation and history pages, with real rows behind them."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib import admin
from django.contrib.admin.options import ModelAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from emporium.accounts.models import User
from emporium.carts.models import CartItem, ShoppingCart
from emporium.core.models import IdempotencyKey
from emporium.core.tests.factories import (
    CategoryFactory,
    OrderFactory,
    OrderItemFactory,
    PaymentFactory,
    ProductFactory,
    UserFactory,
    make_review,
)
from emporium.delivery import services as delivery_services
from emporium.orders.models import OrderStatus
from emporium.orders.services import order_transition
from emporium.payments import services as payment_services
from emporium.wishlists.models import Wishlist, WishlistItem

REGISTERED = sorted(admin.site._registry.items(), key=lambda entry: entry[0]._meta.label)
ADMIN_IDS = [model._meta.label for model, _ in REGISTERED]


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser(
        username="root", email="root@example.com", password="correct-horse-battery-staple"
    )


@pytest.fixture
def admin_client(superuser: User) -> Client:
    """Shadows pytest-django's fixture: logs in with force_login, no password round trip."""
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def rows(superuser: User) -> None:
    """At least one row of every registered model."""
    customer = UserFactory()
    parent = CategoryFactory(name="Parent")
    product = ProductFactory(category=CategoryFactory(name="Child", parent=parent))
    make_review(product=product, user=customer, rating=4, comment="fine")
    CartItem.objects.create(
        cart=ShoppingCart.objects.create(user=customer), product=product, quantity=1
    )
    WishlistItem.objects.create(wishlist=Wishlist.objects.create(user=customer), product=product)
    order = OrderFactory(user=customer)
    OrderItemFactory(order=order, product=product)
    payment = PaymentFactory(order=order)
    payment_services.payment_charge_report(  # a charge of another amount: a discrepancy
        charge=payment_services.ReportedCharge(
            payment_id=payment.pk, provider_reference="ch_1", amount=Decimal("0.01"), currency="EUR"
        )
    )
    order_transition(order_id=order.pk, to_status=OrderStatus.CANCELLED, actor=superuser)
    device = delivery_services.device_issue(name="Van 1").device
    paid = OrderFactory(user=customer, order_status=OrderStatus.PAID)
    OrderItemFactory(order=paid, product=product)
    delivery_services.shipment_create(order=paid, device=device, actor=superuser)
    point = {
        "device_id": device.pk,
        "timestamp": timezone.now().isoformat(),
        "latitude": 52.52,
        "longitude": 13.405,
    }
    delivery_services.telemetry_batch_ingest(
        device=device, body=json.dumps([point]).encode(), media_type="application/json"
    )
    IdempotencyKey.objects.create(
        user=customer,
        key="checkout-1",
        scope="orders.place",
        request_fingerprint="0" * 64,
        locked_until=timezone.now(),
        completed_at=timezone.now(),
        response_status=201,
        response_body=b"{}",
        expires_at=timezone.now() + timedelta(days=1),
    )
    Group.objects.create(name="Support")
    RefreshToken.for_user(customer).blacklist()  # an outstanding and a blacklisted token
    for model, _ in REGISTERED:
        if not model._default_manager.exists():
            _create_default_row(model)


def _create_default_row(model: type[Model]) -> None:
    """A row for a model registered after this file was written, from field defaults alone.

    A model that needs more than that fails here, pointing at the fixture to extend.
    """
    try:
        with transaction.atomic():
            model._default_manager.create()
    except (IntegrityError, ValidationError, TypeError, ValueError) as error:
        pytest.fail(f"add a {model._meta.label} row to the rows fixture: {error}")


def url_for(model: type[Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_domain_app_has_admin_pages() -> None:
    labels = set(ADMIN_IDS)

    assert {
        "accounts.User",
        "catalog.Category",
        "catalog.Product",
        "reviews.Review",
        "carts.ShoppingCart",
        "carts.CartItem",
        "wishlists.Wishlist",
        "wishlists.WishlistItem",
        "orders.Order",
        "orders.OrderItem",
        "payments.Payment",
    } <= labels


@pytest.mark.django_db
@pytest.mark.usefixtures("rows")
@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=ADMIN_IDS)
def test_changelist_renders_plain_searched_and_filtered(
    admin_client: Client, model: type[Model], model_admin: ModelAdmin
) -> None:
    changelist = url_for(model, "changelist")

    plain = admin_client.get(changelist)
    assert plain.status_code == 200
    assert plain.context["cl"].result_count >= 1

    searched = admin_client.get(changelist, {"q": "x"})
    assert searched.status_code == 200

    # Follow the links the filter sidebar itself offers, so every filter is really applied.
    filter_links = [
        choice["query_string"]
        for spec in plain.context["cl"].filter_specs
        for choice in list(spec.choices(plain.context["cl"]))[1:]
    ]
    assert bool(filter_links) == bool(model_admin.list_filter)
    for query_string in filter_links:
        filtered = admin_client.get(changelist + query_string)
        assert filtered.status_code == 200, query_string
        # An unknown filter value sends the admin to "?e=1" with a 302; not here.
        assert "e=1" not in filtered.get("Location", "")

    if model_admin.date_hierarchy:
        row = model._default_manager.first()
        value = getattr(row, model_admin.date_hierarchy)
        dated = admin_client.get(
            changelist,
            {f"{model_admin.date_hierarchy}__year": value.year, "q": "x"},
        )
        assert dated.status_code == 200


@pytest.mark.django_db
@pytest.mark.usefixtures("rows")
@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=ADMIN_IDS)
def test_add_change_delete_and_history_pages_render(
    admin_client: Client, superuser: User, model: type[Model], model_admin: ModelAdmin
) -> None:
    request = admin_client.get(url_for(model, "changelist")).wsgi_request
    row = model._default_manager.order_by("pk").first()
    assert row is not None, f"no {model._meta.label} row to open"

    add = admin_client.get(url_for(model, "add"))
    assert add.status_code == (200 if model_admin.has_add_permission(request) else 403)

    assert admin_client.get(url_for(model, "change", row.pk)).status_code == 200
    assert admin_client.get(url_for(model, "history", row.pk)).status_code == 200
    delete = admin_client.get(url_for(model, "delete", row.pk))
    assert delete.status_code == (200 if model_admin.has_delete_permission(request, row) else 403)


@pytest.mark.django_db
def test_admin_requires_a_staff_login() -> None:
    response = Client().get(reverse("admin:orders_order_changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.django_db
def test_migrations_are_complete_for_the_whole_project() -> None:
    """The admin pages above only mean something when the schema matches the models."""
    output = StringIO()

    call_command("makemigrations", "--check", "--dry-run", stdout=output)

    assert "No changes detected" in output.getvalue()
