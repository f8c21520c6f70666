"""No write takes a field its request does not declare writable.

For every route and method of the URL conf that writes (POST, PUT, PATCH), the
writable fields are read from the request body the OpenAPI document derives
from the view's serializer (read-only fields are not in it). A valid body for
the route is sent together with a hostile value for every other field of the
model the route writes: ids, owners (``user``), ``is_staff``,
``is_superuser``, groups and permissions, statuses, totals and prices that are
computed, counters, timestamps. The stored row must not hold any of them.

A new writing route fails ``test_every_write_is_swept`` until it gets a valid
body below (or a reason it writes no model row from its body).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import models
from drf_spectacular.generators import SchemaGenerator

from emporium.accounts.models import User
from emporium.carts.models import CartItem
from emporium.catalog.models import Category, Product
from emporium.core.tests.factories import OrderFactory, OrderItemFactory, client_for
from emporium.delivery.models import CourierDevice, Shipment
from emporium.integrations.webhooks.models import WebhookSubscription
from emporium.notifications.channels.models import DeviceToken
from emporium.notifications.models import Broadcast
from emporium.orders.models import Order, OrderStatus
from emporium.payments.models import Payment
from emporium.reviews.models import Review
from emporium.wishlists.models import WishlistItem
from tests.support.routes import BODY_METHODS, Route, api_routes
from tests.support.world import World, build_world, param_models

pytestmark = pytest.mark.django_db

HOSTILE_TEXT = "mass-assigned"
HOSTILE_INT = 31337
HOSTILE_DECIMAL = Decimal("0.01")
HOSTILE_MOMENT = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


def _pending_order(world: World) -> None:
    """Points the route's order at a fresh one of the owner's, pending payment."""
    order = OrderFactory(user=world.owner, order_status=OrderStatus.PENDING_PAYMENT)
    OrderItemFactory(order=order, product=world.objects[Product])
    world.objects[Order] = order


def _paid_order(world: World) -> None:
    order = OrderFactory(user=world.owner, order_status=OrderStatus.PAID)
    OrderItemFactory(order=order, product=world.objects[Product])
    world.objects[Order] = order


@dataclass(frozen=True)
class Write:
    """Who sends a valid body, and which row it writes: ``model`` is new, else the route's."""

    caller: str  # a role of the world, or "owner"
    body: Callable[[World], dict[str, Any]]
    model: type[models.Model] | None = None
    prepare: Callable[[World], None] | None = None
    # Fields the action itself sets (to a value a hostile one could equal).
    effects: frozenset[str] = frozenset()


def _empty(world: World) -> dict[str, Any]:
    return {}


_WEBHOOK = {"url": "http://127.0.0.1:9/hooks", "event_types": ["order.paid"]}

WRITES: dict[tuple[str, str], Write] = {
    ("/api/auth/register/", "POST"): Write(
        "anonymous",
        lambda w: {
            "username": "mallory",
            "email": "mallory@example.com",
            "password": "Tr0ub4dor-horse-staple-9",
        },
        model=User,
    ),
    ("/api/auth/me/", "PATCH"): Write("owner", lambda w: {"first_name": "Mallory"}),
    ("/api/users/{pk}/", "PATCH"): Write("admin", lambda w: {"first_name": "Renamed"}),
    ("/api/cart/items/", "POST"): Write(
        "customer", lambda w: {"product": w.objects[Product].pk, "quantity": 1}, model=CartItem
    ),
    ("/api/cart/items/{pk}/", "PATCH"): Write("owner", lambda w: {"quantity": 2}),
    ("/api/wishlist/items/", "POST"): Write(
        "customer", lambda w: {"product": w.objects[Product].pk}, model=WishlistItem
    ),
    ("/api/categories/", "POST"): Write(
        "catalog_manager", lambda w: {"name": "Lamps"}, model=Category
    ),
    ("/api/categories/{pk}/", "PATCH"): Write("catalog_manager", lambda w: {"name": "Renamed"}),
    ("/api/products/", "POST"): Write(
        "catalog_manager",
        lambda w: {
            "name": "Lamp",
            "sku": "LAMP-1",
            "price": "5.00",
            "stock_quantity": 3,
            "category": w.objects[Category].pk,
        },
        model=Product,
    ),
    ("/api/products/{pk}/", "PATCH"): Write("catalog_manager", lambda w: {"name": "Renamed"}),
    ("/api/products/{product_pk}/reviews/", "POST"): Write(
        "customer", lambda w: {"rating": 5, "comment": "Bright"}, model=Review
    ),
    ("/api/products/{product_pk}/reviews/{pk}/", "PATCH"): Write(
        "owner", lambda w: {"comment": "Edited"}
    ),
    ("/api/orders/", "POST"): Write("owner", _empty, model=Order),
    ("/api/orders/{pk}/cancel/", "POST"): Write(
        "owner", lambda w: {"reason": "Changed my mind"}, prepare=_pending_order
    ),
    ("/api/orders/{pk}/ship/", "POST"): Write("admin", _empty, prepare=_paid_order),
    ("/api/orders/{pk}/deliver/", "POST"): Write("admin", _empty),
    ("/api/orders/{order_pk}/payments/", "POST"): Write(
        "owner",
        lambda w: {"payment_method": "card", "token": "tok_visa"},
        model=Payment,
        prepare=_pending_order,
    ),
    ("/api/devices/", "POST"): Write("admin", lambda w: {"name": "Van 9"}, model=CourierDevice),
    ("/api/devices/{pk}/revoke/", "POST"): Write(
        "admin", _empty, effects=frozenset({"is_active", "revoked_at"})
    ),
    ("/api/devices/{pk}/rotate-token/", "POST"): Write("admin", _empty),
    ("/api/shipments/", "POST"): Write(
        "admin",
        lambda w: {"order": w.objects[Order].pk, "device": w.objects[CourierDevice].pk},
        model=Shipment,
        prepare=_paid_order,
    ),
    ("/api/shipments/{pk}/start/", "POST"): Write(
        "admin", _empty, effects=frozenset({"status", "in_transit_at"})
    ),
    ("/api/shipments/{pk}/deliver/", "POST"): Write("admin", _empty),
    ("/api/webhooks/", "POST"): Write("admin", lambda w: _WEBHOOK, model=WebhookSubscription),
    ("/api/webhooks/{pk}/", "PUT"): Write("admin", lambda w: _WEBHOOK),
    ("/api/webhooks/{pk}/", "PATCH"): Write("admin", lambda w: {"description": "ERP"}),
    ("/api/webhooks/{pk}/rotate-secret/", "POST"): Write("admin", lambda w: {"grace_seconds": 60}),
    (
        "/api/webhooks/{webhooksubscription_pk}/deliveries/{webhookdelivery_pk}/replay/",
        "POST",
    ): Write("admin", _empty, effects=frozenset({"status"})),
    ("/api/notifications/{pk}/read/", "POST"): Write(
        "owner", _empty, effects=frozenset({"read_at"})
    ),
    ("/api/notifications/broadcasts/", "POST"): Write(
        "admin",
        lambda w: {
            "title": "Sale",
            "body": "All week.",
            "channels": ["in_app"],
            "audience": {"type": "recent_buyers", "value": 30},
        },
        model=Broadcast,
    ),
    ("/api/notifications/broadcasts/{pk}/cancel/", "POST"): Write(
        "admin", _empty, effects=frozenset({"status", "finished_at"})
    ),
    ("/api/notifications/devices/", "POST"): Write(
        "owner",
        lambda w: {"platform": "android", "token": f"fcm:world-device-{w.owner.pk}-0123456789"},
        model=DeviceToken,
    ),
    ("/api/notifications/dead-letters/{pk}/replay/", "POST"): Write(
        "admin", _empty, effects=frozenset({"status"})
    ),
    ("/api/products/imports/{pk}/cancel/", "POST"): Write(
        "admin", _empty, effects=frozenset({"status", "cancel_requested", "finished_at"})
    ),
}

# Writes whose body sets no model field through a serializer.
NO_MODEL_ROW = {
    ("/api/auth/login/", "POST"): "exchanges credentials for tokens",
    ("/api/auth/refresh/", "POST"): "exchanges a refresh token for tokens",
    ("/api/auth/logout/", "POST"): "revokes the refresh token it is given",
    ("/api/payments/webhook/", "POST"): "a signed provider event, read field by field",
    ("/api/telemetry/", "POST"): "device points decoded by one msgspec struct, no serializer",
    ("/api/notifications/read-all/", "POST"): "marks the caller's rows read; the body is a bound",
    ("/api/notifications/preferences/", "PUT"): "a kind/channel matrix applied by the service",
    ("/api/notifications/dead-letters/replay/", "POST"): "a filter of dead letters to send again",
    ("/api/products/imports/", "POST"): "a CSV or NDJSON file streamed to disk, not a JSON body",
}

SWEPT = [
    (route, method)
    for route in api_routes()
    for method in route.sorted_methods()
    if method in BODY_METHODS and (str(route), method) not in NO_MODEL_ROW
]


def test_every_write_is_swept() -> None:
    writes = {(str(route), method) for route, method in SWEPT}

    assert sorted(writes - WRITES.keys()) == [], "writes without a valid body here"
    assert sorted(WRITES.keys() - writes) == [], "bodies for writes the URL conf lacks"


_SCHEMA: dict[str, Any] = {}


def writable_fields(route: Route, method: str) -> set[str]:
    """The fields of the route's request body in the OpenAPI document."""
    if not _SCHEMA:
        _SCHEMA.update(SchemaGenerator().get_schema(request=None, public=True))
    path = str(route).replace("{pk}", "{id}")
    operation = _SCHEMA["paths"][path][method.lower()]
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return set()
    name = schema["$ref"].rsplit("/", 1)[-1]
    component = _SCHEMA["components"]["schemas"][name]
    return {
        field for field, spec in component.get("properties", {}).items() if not spec.get("readOnly")
    }


def _changed_choice(field: models.Field[Any, Any], current: Any) -> Any:
    return next(value for value, _ in field.choices or () if value != current)


def hostile_values(
    model: type[models.Model], writable: set[str], row: models.Model | None, victim: World
) -> dict[str, tuple[str, Any, Any]]:
    """Field name -> (stored attribute, value sent, the stored value that would betray it)."""
    hostile: dict[str, tuple[str, Any, Any]] = {}
    for field in model._meta.get_fields():
        if (field.auto_created and not field.concrete) or field.name in writable:
            continue
        current = getattr(row, field.attname, None) if row is not None and field.concrete else None
        if isinstance(field, models.ManyToManyField):
            target = Group if field.related_model is Group else Permission
            ids = list(target.objects.order_by("pk").values_list("pk", flat=True)[:3])
            hostile[field.name] = (field.name, ids, set(ids))
        elif isinstance(field, models.ForeignKey):
            related = field.related_model
            other = victim.owner if related is User else victim.objects.get(related)  # type: ignore[call-overload]
            value = other.pk if other is not None else HOSTILE_INT
            hostile[field.name] = (field.attname, value, value)
        elif field.choices:
            default = field.get_default()
            value = _changed_choice(field, current if row is not None else default)
            hostile[field.name] = (field.attname, value, value)
        elif isinstance(field, models.BooleanField):
            base = current if row is not None else field.get_default()
            value = not bool(base)
            hostile[field.name] = (field.attname, value, value)
        elif isinstance(field, models.DecimalField):
            hostile[field.name] = (field.attname, str(HOSTILE_DECIMAL), HOSTILE_DECIMAL)
        elif isinstance(field, models.DateTimeField):
            hostile[field.name] = (field.attname, HOSTILE_MOMENT.isoformat(), HOSTILE_MOMENT)
        elif isinstance(field, models.DateField):
            hostile[field.name] = (field.attname, "2001-02-03", date(2001, 2, 3))
        elif isinstance(field, models.IntegerField | models.AutoField):
            hostile[field.name] = (field.attname, HOSTILE_INT, HOSTILE_INT)
        elif isinstance(field, models.JSONField):
            hostile[field.name] = (field.attname, {"mass": "assigned"}, {"mass": "assigned"})
        elif isinstance(field, models.EmailField):
            hostile[field.name] = (field.attname, "mass@assigned.example", "mass@assigned.example")
        elif isinstance(field, models.CharField | models.TextField):
            hostile[field.name] = (field.attname, HOSTILE_TEXT, HOSTILE_TEXT)
    return hostile


def _stored(row: models.Model, attribute: str) -> Any:
    value = getattr(row, attribute)
    if isinstance(value, models.Manager):
        return set(value.values_list("pk", flat=True))
    return value


@pytest.mark.parametrize(
    ("route", "method"), SWEPT, ids=[f"{method} {route}" for route, method in SWEPT]
)
def test_no_write_takes_a_field_it_does_not_declare(route: Route, method: str) -> None:
    write = WRITES.get((str(route), method))
    if write is None:
        pytest.fail(f"{method} {route} has no valid body in WRITES")
    world, victim = build_world(), build_world()
    if write.prepare is not None:
        write.prepare(world)
    if str(route) == "/api/auth/me/":
        target: models.Model | None = world.owner
    elif write.model is None:
        target = world.objects[list(param_models(route).values())[-1]]
    else:
        target = None
    model = write.model or type(target)
    writable = writable_fields(route, method)
    hostile = hostile_values(model, writable | write.effects, target, victim)
    assert hostile, f"{method} {route}: no field to try"
    before = set(model._default_manager.values_list("pk", flat=True))
    body = {name: sent for name, (_, sent, _) in hostile.items()} | write.body(world)
    client = client_for(world.owner) if write.caller == "owner" else world.client(write.caller)

    response = client.generic(
        method, world.url(route), json.dumps(body, default=str), content_type="application/json"
    )

    assert response.status_code < 400 or response.status_code == 409, response.content[:300]
    if target is not None:
        rows = [model._default_manager.get(pk=target.pk)]
    else:
        rows = list(model._default_manager.exclude(pk__in=before))
        assert len(rows) == 1, f"{method} {route} wrote {len(rows)} {model.__name__} rows"
    taken = {
        name: _stored(row, attribute)
        for row in rows
        for name, (attribute, _, betrayed) in hostile.items()
        if _stored(row, attribute) == betrayed
        or (isinstance(betrayed, set) and betrayed and betrayed <= _stored(row, attribute))
    }
    assert taken == {}
