"""A world of objects for the API sweeps to point routes at: one customer's
objects of every kind, an account per role, and a snapshot of the database.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db import models
from rest_framework.test import APIClient

from emporium.accounts.models import User
from emporium.accounts.roles import Role
from emporium.carts import services as cart_services
from emporium.carts.models import CartItem
from emporium.catalog.models import Category, Product, ProductImport, ProductImportFormat
from emporium.core.tests.factories import (
    CategoryFactory,
    OrderFactory,
    OrderItemFactory,
    PaymentFactory,
    ProductFactory,
    StaffFactory,
    UserFactory,
    client_for,
    make_review,
)
from emporium.delivery import services as delivery_services
from emporium.delivery.models import CourierDevice, Shipment
from emporium.integrations.webhooks.models import WebhookDelivery, WebhookSubscription
from emporium.notifications.channels.models import Delivery, DeliveryStatus
from emporium.notifications.models import AudienceType, Broadcast, BroadcastStatus, Notification
from emporium.orders.models import Order, OrderStatus
from emporium.payments.models import Payment, PaymentStatus
from emporium.reviews.models import Review
from emporium.wishlists import services as wishlist_services
from emporium.wishlists.models import WishlistItem
from tests.support.routes import Route

ROLES = ("anonymous", "customer", "support", "catalog_manager", "admin")
MISSING_ID = 987_654_321


# Plain views that take an id but name no model; every viewset names its own.
_PLAIN_VIEW_MODELS: dict[str, type[models.Model]] = {
    "/api/cart/items/{pk}/": CartItem,
    "/api/wishlist/items/{pk}/": WishlistItem,
    "/api/products/imports/{pk}/": ProductImport,
    "/api/products/imports/{pk}/errors.csv": ProductImport,
    "/api/products/imports/{pk}/cancel/": ProductImport,
    "/api/notifications/dead-letters/{pk}/replay/": Delivery,
    "/api/notifications/{pk}/read/": Notification,
    "/api/notifications/broadcasts/{pk}/": Broadcast,
    "/api/notifications/broadcasts/{pk}/cancel/": Broadcast,
}


def _model_named(name: str) -> type[models.Model]:
    matches = [
        model
        for model in apps.get_models()
        if model.__module__.startswith("emporium.") and model._meta.model_name == name
    ]
    if len(matches) != 1:
        raise AssertionError(f"no single model is called {name!r}: {matches}")
    return matches[0]


def param_models(route: Route) -> dict[str, type[models.Model]]:
    """The model each id of the route names: ``<model>_pk`` by name, ``pk`` by the view."""
    found: dict[str, type[models.Model]] = {}
    for param in route.params:
        if param.endswith("_pk"):
            found[param] = _model_named(param.removesuffix("_pk"))
            continue
        view = route.view_class
        queryset = getattr(view, "queryset", None)
        serializer = getattr(view, "serializer_class", None)
        if route.template in _PLAIN_VIEW_MODELS:
            found[param] = _PLAIN_VIEW_MODELS[route.template]
        elif queryset is not None:
            found[param] = queryset.model
        elif serializer is not None and hasattr(serializer, "Meta"):
            found[param] = serializer.Meta.model
        else:
            raise AssertionError(f"{route}: which model does {{{param}}} name? Add it above.")
    return found


@dataclass
class World:
    """One customer's (the owner's) objects of every kind, and an account per role."""

    owner: User
    accounts: dict[str, User | None]
    objects: dict[type[models.Model], models.Model]

    def client(self, role: str) -> APIClient:
        account = self.accounts[role]
        return APIClient() if account is None else client_for(account)

    def url(self, route: Route, *, missing: bool = False) -> str:
        path = route.template
        for param, model in param_models(route).items():
            value = MISSING_ID if missing else self.objects[model].pk
            path = path.replace("{" + param + "}", str(value))
        return path


def build_world() -> World:
    """Objects that all belong to one customer (or to no one, for the catalog).

    The order is paid and shipped, so every action on it has a state it may
    legitimately be asked from.
    """
    owner = UserFactory()
    category: Category = CategoryFactory()
    product: Product = ProductFactory(category=category, stock_quantity=50, price=Decimal("10.00"))
    order: Order = OrderFactory(
        user=owner, order_status=OrderStatus.PAID, total_amount=Decimal("20.00")
    )
    OrderItemFactory(order=order, product=product, quantity=2, price=Decimal("10.00"))
    payment: Payment = PaymentFactory(
        order=order, amount=Decimal("20.00"), status=PaymentStatus.SUCCEEDED
    )
    device = delivery_services.device_issue(name="courier of the owner").device
    shipment = delivery_services.shipment_create(order=order, device=device)
    order.refresh_from_db()
    review: Review = make_review(product=product, user=owner, rating=4, comment="Owner's words")
    cart_item = cart_services.cart_item_add(user=owner, product=product, quantity=1)
    wishlist_item, _ = wishlist_services.wishlist_item_add(user=owner, product=product)
    accounts: dict[str, User | None] = {
        "anonymous": None,
        "customer": UserFactory(),
        "support": StaffFactory(role=Role.SUPPORT),
        "catalog_manager": StaffFactory(role=Role.CATALOG_MANAGER),
        "admin": StaffFactory(role=Role.ADMIN),
    }
    objects: dict[type[models.Model], models.Model] = {
        User: owner,
        Category: category,
        Product: product,
        Order: order,
        Payment: payment,
        CourierDevice: device,
        Shipment: shipment,
        Review: review,
        CartItem: cart_item,
        WishlistItem: wishlist_item,
        Delivery: Delivery.objects.create(  # a dead letter of the owner's
            channel="email",
            recipient=owner,
            kind="order_paid",
            dedup_key=f"world:{owner.pk}",
            status=DeliveryStatus.DEAD,
            next_attempt_at=order.created_at,
            last_error="SMTP 550 mailbox unavailable",
        ),
        Notification: Notification.objects.create(
            recipient=owner, kind="order_shipped", title="Shipped", dedup_key="world"
        ),
        Broadcast: Broadcast.objects.create(
            title="World",
            body="A running broadcast",
            channels=["in_app"],
            audience_type=AudienceType.ALL,
            status=BroadcastStatus.RUNNING,
        ),
        # Staff's webhook subscription (nobody's own) and one delivered event of the owner's order.
        WebhookSubscription: (
            subscription := WebhookSubscription.objects.create(
                url="http://127.0.0.1:9/hooks", event_types=["order.paid"], secret="whsec_world"
            )
        ),
        WebhookDelivery: WebhookDelivery.objects.create(
            subscription=subscription,
            event_id=uuid.uuid4(),
            event_type="order.paid",
            aggregate_type="order",
            aggregate_id=str(order.pk),
            request_body="{}",
            status="delivered",
            next_attempt_at=order.created_at,
        ),
        ProductImport: ProductImport.objects.create(
            file_format=ProductImportFormat.CSV,
            encoding="utf-8",
            # Two worlds in one test: each import its own file.
            content_sha256=hashlib.sha256(f"world:{owner.pk}".encode()).hexdigest(),
            size_bytes=100,
            stored_name=f"world-{owner.pk}.csv",
        ),
    }
    return World(owner=owner, accounts=accounts, objects=objects)


def database_snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of every project model, accounts and groups included, in primary-key order."""
    snapshot: dict[str, list[dict[str, Any]]] = {}
    for model in apps.get_models():
        if not (model.__module__.startswith("emporium.") or model._meta.app_label == "auth"):
            continue
        if not model._meta.managed:  # no table (a holder of permissions)
            continue
        rows = list(model._default_manager.order_by("pk").values())
        if model is User:
            for row, user in zip(rows, model._default_manager.order_by("pk"), strict=True):
                row["groups"] = sorted(user.groups.values_list("pk", flat=True))
        snapshot[model._meta.label] = rows
    return snapshot
