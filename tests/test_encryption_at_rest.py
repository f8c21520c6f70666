"""Sensitive columns on the real PostgreSQL server: what the table holds, and key rotation.

Orders are placed through the API (the one-statement checkout), payments and
devices through their services; the table is then read with a raw cursor,
never through the model, so these tests see exactly what a leaked dump shows.
"""

from __future__ import annotations

import base64
import random
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction
from django.test import override_settings

from emporium.core.encryption import (
    DecryptionFailed,
    EncryptionError,
    envelope_key_id,
    sealed_column_remaining,
)
from emporium.core.tests.factories import (
    OrderFactory,
    PaymentFactory,
    ProductFactory,
    StaffFactory,
    UserFactory,
    client_for,
)
from emporium.delivery import services as delivery_services
from emporium.delivery.models import CourierDevice
from emporium.orders import selectors as order_selectors
from emporium.orders import services as order_services
from emporium.orders.models import Order
from emporium.orders.tests.support import ORDERS_URL, cart_fill, order_url
from emporium.payments.models import Payment

OLD_KEY = ("old", bytes(range(32)))
NEW_KEY = ("new", bytes(range(100, 132)))
ADDRESS = "Gartenstrasse 12, 10115 Berlin"
PHONE = "+49 30 1234-5678"
PHONE_STORED = "+493012345678"


@pytest.fixture
def _postgresql(database_url: str) -> None:
    assert connection.vendor == "postgresql"


pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("_postgresql")]


def _raw(table: str, pk: int, *columns: str) -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)} FROM {table} WHERE id = %s",  # noqa: S608 (test constants)
            [pk],
        )
        return tuple(cursor.fetchone())


def _row_text(table: str, pk: int) -> str:
    """The whole row as PostgreSQL prints it: every column, as stored."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT t::text FROM {table} t WHERE id = %s", [pk])  # noqa: S608
        return str(cursor.fetchone()[0])


def _checkout(user: Any, body: dict[str, Any] | None) -> dict[str, Any]:
    cart_fill(user, [(ProductFactory(price=Decimal("9.99"), stock_quantity=5), 1)])
    response = client_for(user).post(ORDERS_URL, body, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def test_a_checkout_stores_no_plaintext_and_shows_it_to_the_owner() -> None:
    user = UserFactory()

    body = _checkout(user, {"shipping_address": ADDRESS, "phone": PHONE})

    assert (body["shipping_address"], body["phone"]) == (ADDRESS, PHONE_STORED)
    row = _row_text("orders_order", body["id"])
    for secret in (ADDRESS, "Gartenstrasse", "10115", PHONE_STORED, "12345678"):
        assert secret not in row
    address, phone, index = _raw(
        "orders_order", body["id"], "shipping_address", "phone", "phone_index"
    )
    assert address.startswith("v1:")
    assert phone.startswith("v1:")
    assert "12345678" not in index
    # The owner reads it back in plaintext, in the list and the detail.
    detail = client_for(user).get(order_url(body["id"])).json()
    assert (detail["shipping_address"], detail["phone"]) == (ADDRESS, PHONE_STORED)
    listed = client_for(user).get(ORDERS_URL).json()["results"][0]
    assert (listed["shipping_address"], listed["phone"]) == (ADDRESS, PHONE_STORED)


def test_both_checkout_paths_seal_alike() -> None:
    """The SQL statement gets what the ORM path would write: both open through the model."""
    placed = {}
    for name, place in (
        ("sql", order_services._order_place_postgresql),
        ("orm", order_services._order_place_portable),
    ):
        user = UserFactory()
        cart_fill(user, [(ProductFactory(stock_quantity=5), 1)])
        order = place(user_id=user.pk, shipping_address=ADDRESS, phone=PHONE_STORED)
        assert (order.shipping_address, order.phone) == (ADDRESS, PHONE_STORED)
        assert ADDRESS not in _row_text("orders_order", order.pk)
        placed[name] = Order.objects.get(pk=order.pk)

    for order in placed.values():
        assert (order.shipping_address, order.phone) == (ADDRESS, PHONE_STORED)
    assert placed["sql"].phone_index == placed["orm"].phone_index


def test_a_bad_phone_is_a_400_and_places_nothing() -> None:
    user = UserFactory()
    cart_fill(user, [(ProductFactory(stock_quantity=5), 1)])

    response = client_for(user).post(ORDERS_URL, {"phone": "call me"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["details"]["phone"]
    assert not Order.objects.filter(user=user).exists()


def test_a_flipped_bit_in_the_table_is_detected_on_read() -> None:
    order = OrderFactory(shipping_address=ADDRESS)
    (stored,) = _raw("orders_order", order.pk, "shipping_address")
    prefix, payload = stored.rsplit(":", 1)
    raw = bytearray(base64.b64decode(payload))
    raw[len(raw) // 2] ^= 0x80
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orders_order SET shipping_address = %s WHERE id = %s",
            [f"{prefix}:{base64.b64encode(bytes(raw)).decode()}", order.pk],
        )

    with pytest.raises(DecryptionFailed, match=r"orders_order\.shipping_address"):
        _ = Order.objects.get(pk=order.pk).shipping_address


def test_a_ciphertext_copied_to_another_row_or_column_does_not_open() -> None:
    victim = OrderFactory(shipping_address=ADDRESS, phone=PHONE_STORED)
    attacker = OrderFactory(shipping_address="Elsewhere 1", phone="+100000")
    (stolen,) = _raw("orders_order", victim.pk, "shipping_address")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orders_order SET shipping_address = %s, phone = %s WHERE id = %s",
            [stolen, stolen, attacker.pk],
        )

    moved = Order.objects.get(pk=attacker.pk)
    with pytest.raises(DecryptionFailed):
        _ = moved.shipping_address  # another row
    with pytest.raises(DecryptionFailed):
        _ = moved.phone  # another column too
    assert Order.objects.get(pk=victim.pk).shipping_address == ADDRESS


def test_writes_that_would_bypass_sealing_are_refused() -> None:
    order = OrderFactory(shipping_address=ADDRESS)

    with pytest.raises(EncryptionError, match="sealed"), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(shipping_address="plain")
    with pytest.raises(EncryptionError, match="blind index"), transaction.atomic():
        list(Order.objects.filter(phone=PHONE_STORED))
    assert Order.objects.get(pk=order.pk).shipping_address == ADDRESS


def test_the_blind_index_finds_equal_phones_only(settings: Any) -> None:
    settings.EMPORIUM_ENCRYPTION_KEYS = (OLD_KEY,)
    first = OrderFactory(phone=PHONE_STORED)
    second = OrderFactory(phone=PHONE_STORED)
    OrderFactory(phone="+493012345679")
    OrderFactory(phone=None)

    found = order_selectors.order_list_for_phone(phone="+49 (30) 1234 5678")
    assert sorted(order.pk for order in found) == sorted([first.pk, second.pk])

    # After a new key comes first, rows still indexed under the old one are found too.
    settings.EMPORIUM_ENCRYPTION_KEYS = (NEW_KEY, OLD_KEY)
    third = OrderFactory(phone=PHONE_STORED)
    found = order_selectors.order_list_for_phone(phone=PHONE_STORED)
    assert sorted(order.pk for order in found) == sorted([first.pk, second.pk, third.pk])
    assert order_selectors.order_list_for_phone(phone="not a phone").count() == 0


def test_payment_tokens_and_device_metadata_are_sealed() -> None:
    payment = PaymentFactory(provider_token="tok_visa_4242")
    issued = delivery_services.device_issue(
        name="Van 7", metadata={"imei": "356938035643809", "sim": "+4915112345678"}
    )

    assert "tok_visa_4242" not in _row_text("payments_payment", payment.pk)
    device_row = _row_text("delivery_courierdevice", issued.device.pk)
    assert "356938035643809" not in device_row
    assert "4915112345678" not in device_row
    assert Payment.objects.get(pk=payment.pk).provider_token == "tok_visa_4242"
    assert CourierDevice.objects.get(pk=issued.device.pk).metadata == {
        "imei": "356938035643809",
        "sim": "+4915112345678",
    }
    staff_view = client_for(StaffFactory()).get(f"/api/devices/{issued.device.pk}/").json()
    assert staff_view["metadata"] == {"imei": "356938035643809", "sim": "+4915112345678"}


def _key_ids(column: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM orders_order WHERE {column} IS NOT NULL")  # noqa: S608
        return {envelope_key_id(value) for (value,) in cursor.fetchall()}


@pytest.fixture
def old_orders() -> list[int]:
    """Forty orders sealed under the old key (committed: the writers use other connections)."""
    with override_settings(EMPORIUM_ENCRYPTION_KEYS=(OLD_KEY,)):
        ids = [
            OrderFactory(shipping_address=f"Street {n}", phone=f"+49{n:08d}").pk for n in range(40)
        ]
    return ids


@pytest.mark.django_db(transaction=True)
def test_rotation_under_concurrent_writes_loses_nothing(old_orders: list[int]) -> None:
    latest: dict[int, tuple[str, str]] = {
        pk: (f"Street {n}", f"+49{n:08d}") for n, pk in enumerate(old_orders)
    }
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(owned: list[int], seed: int) -> None:
        """Keeps giving its own orders new values until the rotation is over."""
        generator = random.Random(seed)
        try:
            while not stop.is_set():
                pk = generator.choice(owned)
                order = Order.objects.get(pk=pk)
                value = (f"Moved {generator.randrange(10**6)}", f"+1{generator.randrange(10**8)}")
                order.shipping_address, order.phone = value
                order.save(update_fields=["shipping_address", "phone", "phone_index"])
                latest[pk] = value
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connections.close_all()

    with override_settings(EMPORIUM_ENCRYPTION_KEYS=(NEW_KEY, OLD_KEY)):
        writers = [
            threading.Thread(target=write, args=(old_orders[index::3], index)) for index in range(3)
        ]
        for writer in writers:
            writer.start()
        try:
            call_command("rotate_encryption_keys", batch_size=7)
        finally:
            stop.set()
            for writer in writers:
                writer.join()
        assert errors == []

        # Every row opens to the last value written, under the new key only.
        for pk, (address, phone) in latest.items():
            order = Order.objects.get(pk=pk)
            assert (order.shipping_address, order.phone) == (address, phone)
            assert order.phone_index.startswith("new:")
        assert _key_ids("shipping_address") == {"new"}
        assert _key_ids("phone") == {"new"}
        phone_field = Order._meta.get_field("phone")
        assert sealed_column_remaining(model=Order, sealed_field=phone_field) == 0  # type: ignore[arg-type]
        # The old key can go: everything still opens with the new one alone.
        with override_settings(EMPORIUM_ENCRYPTION_KEYS=(NEW_KEY,)):
            assert [Order.objects.get(pk=pk).shipping_address for pk in latest] == [
                address for address, _ in latest.values()
            ]
            call_command("rotate_encryption_keys", check=True)


@pytest.mark.django_db(transaction=True)
def test_rotation_resumes_and_reports_rows_that_do_not_open(old_orders: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orders_order SET phone = (SELECT phone FROM orders_order WHERE id = %s)"
            " WHERE id = %s",
            [old_orders[0], old_orders[1]],
        )
    with override_settings(EMPORIUM_ENCRYPTION_KEYS=(NEW_KEY, OLD_KEY)):
        with pytest.raises(CommandError, match=r"orders\.Order\.phone"):
            call_command("rotate_encryption_keys", batch_size=5, max_passes=1)

        # Everything else moved; a second run has nothing more to do for the addresses.
        assert _key_ids("shipping_address") == {"new"}
        assert _raw("orders_order", old_orders[1], "phone")[0].startswith("v1:old:")
        with pytest.raises(CommandError, match=r"orders\.Order\.phone"):
            call_command("rotate_encryption_keys", check=True)
