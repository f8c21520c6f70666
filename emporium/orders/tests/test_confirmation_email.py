"""The order confirmation e-mail, delivered to a real local SMTP server and read back.

The server is aiosmtpd on a free port; Django's SMTP backend talks to it over
TCP exactly as it would to a production relay.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from celery.exceptions import Retry
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from kombu import Connection

from config.celery import TASK_QUEUES
from config.celery import app as celery_app
from emporium.accounts.models import User
from emporium.carts import services as cart_services
from emporium.carts.models import CartItem
from emporium.catalog.models import Product
from emporium.core.tests.factories import ProductFactory, UserFactory, client_for
from emporium.integrations.models import OutboxEvent
from emporium.integrations.publishers import LogPublisher
from emporium.integrations.relay import outbox_relay_pending
from emporium.orders import services as order_services
from emporium.orders.models import Order
from emporium.orders.tasks import _confirmation_claim_key, send_confirmation_email
from tests.support.processes import WorkerProcess, free_port, wait_until

# --- a real SMTP server -------------------------------------------------------------


@dataclass
class _Collector:
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


class _HoldingCollector(_Collector):
    """Accepts a message only once the test lets it: the sender waits in the DATA phase."""

    def __init__(self) -> None:
        super().__init__()
        self.receiving = threading.Event()
        self.let_through = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.receiving.set()
        # Waits off the server's loop, so the server keeps serving while it holds.
        await asyncio.get_running_loop().run_in_executor(None, self.let_through.wait, 30)
        return await super().handle_DATA(server, session, envelope)


class LocalSmtpServer:
    """aiosmtpd on a fixed port that can be stopped and started again."""

    def __init__(self, collector: _Collector | None = None) -> None:
        self.port = free_port()
        self.collector = collector or _Collector()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.collector, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller.loop.close()
            self._controller = None

    @property
    def envelopes(self) -> list[Envelope]:
        return list(self.collector.envelopes)

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[arg-type]
            for envelope in self.envelopes
        ]


def _point_django_at(settings: Any, server: LocalSmtpServer) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[LocalSmtpServer]:
    server = LocalSmtpServer()
    server.start()
    _point_django_at(settings, server)
    yield server
    server.stop()


@pytest.fixture
def eager_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Follow-up tasks run in-process, as in the embedded profile, whatever the broker."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


# --- reading the message back -------------------------------------------------------


class _TableText(HTMLParser):
    """The text of each table row of an HTML document, cell by cell."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> list[list[str]]:
    parser = _TableText()
    parser.feed(html)
    return parser.rows


def checkout(user: User, *lines: tuple[Product, int]) -> Order:
    for product, quantity in lines:
        cart_services.cart_item_add(user=user, product=product, quantity=quantity)
    return order_services.order_place(user_id=user.pk)


@pytest.fixture
def customer() -> User:
    return UserFactory(username="ada", email="ada.lovelace@example.com", first_name="Ada")


@pytest.fixture
def basket() -> tuple[Product, Product]:
    tea = ProductFactory(
        name="Tea & Biscuits", sku="TEA-001", price=Decimal("19.99"), stock_quantity=50
    )
    torch = ProductFactory(
        name="Crème brûlée torch", sku="TORCH-7", price=Decimal("1174.53"), stock_quantity=50
    )
    return tea, torch


def assert_is_the_confirmation_of(message: EmailMessage, order: Order, customer: User) -> None:
    tea_line = "3 x Tea & Biscuits (TEA-001) at 19.99 = 59.97"
    torch_line = "1 x Crème brûlée torch (TORCH-7) at 1174.53 = 1174.53"

    assert message["To"] == customer.email
    assert message["From"] == django_settings.DEFAULT_FROM_EMAIL
    assert message["Subject"] == f"Your Emporium order #{order.pk}"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]

    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "Hello Ada,"
    assert lines[2].startswith(f"thank you for your order #{order.pk} placed on ")
    assert [line for line in lines if " x " in line] == [tea_line, torch_line]
    assert "Total: 1234.50 EUR" in lines

    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "Tea &amp; Biscuits" in html  # escaped, not raw markup
    assert table_rows(html) == [
        ["Product", "Qty", "Price", "Total"],
        ["Tea & Biscuits (TEA-001)", "3", "19.99", "59.97"],
        ["Crème brûlée torch (TORCH-7)", "1", "1174.53", "1174.53"],
        ["Total", "1234.50 EUR"],
    ]


# --- the task -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_confirmation_reaches_the_customer_with_every_line_and_the_exact_total(
    smtp_server: LocalSmtpServer, customer: User, basket: tuple[Product, Product]
) -> None:
    tea, torch = basket
    order = checkout(customer, (tea, 3), (torch, 1))
    assert order.total_amount == Decimal("1234.50")

    result = send_confirmation_email.apply(args=(order.pk,))

    assert result.get() == "sent"
    (envelope,) = smtp_server.envelopes
    assert envelope.mail_from == "orders@emporium.example"
    assert envelope.rcpt_tos == ["ada.lovelace@example.com"]
    (message,) = smtp_server.messages()
    assert_is_the_confirmation_of(message, order, customer)


@pytest.mark.django_db
def test_a_second_run_sends_nothing_more_and_the_order_is_stamped(
    smtp_server: LocalSmtpServer, customer: User, basket: tuple[Product, Product]
) -> None:
    order = checkout(customer, (basket[0], 3), (basket[1], 1))
    before = timezone.now()

    assert send_confirmation_email.apply(args=(order.pk,)).get() == "sent"
    order.refresh_from_db()
    stamped_at = order.confirmation_sent_at
    assert stamped_at is not None
    assert before <= stamped_at <= timezone.now()

    assert send_confirmation_email.apply(args=(order.pk,)).get() == "already_sent"

    assert len(smtp_server.envelopes) == 1
    order.refresh_from_db()
    assert order.confirmation_sent_at == stamped_at


@pytest.mark.django_db
def test_an_order_that_no_longer_exists_sends_nothing(smtp_server: LocalSmtpServer) -> None:
    assert send_confirmation_email.apply(args=(987654,)).get() == "already_sent"
    assert smtp_server.envelopes == []


@pytest.mark.django_db
def test_with_the_smtp_server_down_nothing_is_stamped_and_it_sends_once_back(
    smtp_server: LocalSmtpServer, customer: User, basket: tuple[Product, Product]
) -> None:
    order = checkout(customer, (basket[0], 3), (basket[1], 1))
    smtp_server.stop()

    with pytest.raises(Retry) as retry:
        send_confirmation_email.apply(args=(order.pk,))

    assert isinstance(retry.value.exc, ConnectionRefusedError)
    assert retry.value.when == 5  # the first back-off step

    order.refresh_from_db()
    assert order.confirmation_sent_at is None
    assert smtp_server.envelopes == []

    smtp_server.start()
    assert send_confirmation_email.apply(args=(order.pk,)).get() == "sent"
    assert send_confirmation_email.apply(args=(order.pk,)).get() == "already_sent"

    (message,) = smtp_server.messages()
    assert_is_the_confirmation_of(message, order, customer)
    order.refresh_from_db()
    assert order.confirmation_sent_at is not None


@pytest.mark.django_db(transaction=True)
def test_no_lock_on_the_order_is_held_while_the_mail_server_takes_the_message(
    database_url: str, settings: Any, customer: User, basket: tuple[Product, Product]
) -> None:
    """While the SMTP server holds the task in its DATA phase, another connection
    locks the order row with NOWAIT (which fails at once on a row locked elsewhere)."""
    collector = _HoldingCollector()
    server = LocalSmtpServer(collector)
    server.start()
    _point_django_at(settings, server)
    order = checkout(customer, (basket[0], 3), (basket[1], 1))
    outcome: dict[str, object] = {}

    def run_task() -> None:
        try:
            outcome["result"] = send_confirmation_email.apply(args=(order.pk,)).get()
        finally:
            connection.close()  # this thread's own connection

    sender = threading.Thread(target=run_task)
    sender.start()
    try:
        assert collector.receiving.wait(10), "the task never reached the SMTP server"
        with transaction.atomic():
            locked = Order.objects.select_for_update(nowait=True).get(pk=order.pk)
            assert locked.confirmation_sent_at is None  # not stamped before it is sent
            Order.objects.filter(pk=order.pk).update(updated_at=timezone.now())
    finally:
        collector.let_through.set()
        sender.join(30)
        server.stop()

    assert outcome == {"result": "sent"}
    assert len(collector.envelopes) == 1
    order.refresh_from_db()
    assert order.confirmation_sent_at is not None
    assert cache.get(_confirmation_claim_key(order.pk)) is None  # the claim was given back


@pytest.mark.django_db
def test_a_run_that_finds_the_confirmation_claimed_sends_nothing_and_retries(
    smtp_server: LocalSmtpServer, customer: User, basket: tuple[Product, Product]
) -> None:
    order = checkout(customer, (basket[0], 3), (basket[1], 1))
    cache.add(_confirmation_claim_key(order.pk), "another-run", timeout=60)

    with pytest.raises(Retry) as retry:
        send_confirmation_email.apply(args=(order.pk,))

    assert retry.value.when == 5
    assert smtp_server.envelopes == []
    order.refresh_from_db()
    assert order.confirmation_sent_at is None
    assert cache.get(_confirmation_claim_key(order.pk)) == "another-run"  # not taken over

    cache.delete(_confirmation_claim_key(order.pk))  # that run ended without sending
    assert send_confirmation_email.apply(args=(order.pk,)).get() == "sent"
    assert len(smtp_server.envelopes) == 1


# --- after checkout, through the outbox ---------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("eager_tasks")
def test_the_relay_sends_the_confirmation_once_after_checkout(
    smtp_server: LocalSmtpServer, customer: User, basket: tuple[Product, Product]
) -> None:
    order = checkout(customer, (basket[0], 3), (basket[1], 1))
    assert smtp_server.envelopes == []  # nothing is sent from inside the checkout

    assert outbox_relay_pending(publisher=LogPublisher()) == 1
    assert outbox_relay_pending(publisher=LogPublisher()) == 0

    (message,) = smtp_server.messages()
    assert_is_the_confirmation_of(message, order, customer)
    order.refresh_from_db()
    assert order.confirmation_sent_at is not None
    assert OutboxEvent.objects.get().published_at is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("eager_tasks")
def test_a_checkout_that_rolls_back_records_no_event_and_sends_no_mail(
    smtp_server: LocalSmtpServer, customer: User, basket: tuple[Product, Product]
) -> None:
    """Real commits and rollbacks; in the embedded profile the relay runs after commit."""
    tea, torch = basket
    cart_services.cart_item_add(user=customer, product=tea, quantity=3)
    cart_services.cart_item_add(user=customer, product=torch, quantity=2)
    Product.objects.filter(pk=torch.pk).update(stock_quantity=1)  # sold elsewhere meanwhile
    client = client_for(customer)

    refused = client.post("/api/orders/")

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "insufficient_stock"
    assert Order.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    assert dict(Product.objects.values_list("name", "stock_quantity")) == {
        "Tea & Biscuits": 50,  # its decrement was rolled back with the rest
        "Crème brûlée torch": 1,
    }
    assert CartItem.objects.filter(cart__user=customer).count() == 2
    assert outbox_relay_pending(publisher=LogPublisher()) == 0
    assert smtp_server.envelopes == []

    # The same customer, once the cart fits the stock: one order, one e-mail.
    cart_services.cart_item_set_quantity(
        item=CartItem.objects.get(cart__user=customer, product=torch), quantity=1
    )
    accepted = client.post("/api/orders/")
    assert accepted.status_code == 201, accepted.content
    outbox_relay_pending(publisher=LogPublisher())

    order = Order.objects.get()
    (message,) = smtp_server.messages()
    assert message["Subject"] == f"Your Emporium order #{order.pk}"
    assert message["To"] == customer.email


# --- a real worker (PostgreSQL and RabbitMQ) ----------------------------------------


def _purge_email_queue(broker_url: str) -> None:
    """Leftovers from an earlier run would reach the worker before this test's task."""
    (email_queue,) = (queue for queue in TASK_QUEUES if queue.name == "email")
    with Connection(broker_url, connect_timeout=5) as connection:
        bound = email_queue(connection.default_channel)
        bound.declare()
        bound.purge()


@pytest.mark.django_db(transaction=True)
def test_a_worker_retries_while_smtp_is_down_and_sends_once_it_is_back(
    database_url: str,
    broker_url: str,
    start_worker: Any,
    customer: User,
    basket: tuple[Product, Product],
) -> None:
    server = LocalSmtpServer()  # its port is known, but nothing listens yet
    order = checkout(customer, (basket[0], 3), (basket[1], 1))
    _purge_email_queue(broker_url)
    worker: WorkerProcess = start_worker(
        queues="email", extra_env={"EMAIL_URL": f"smtp://127.0.0.1:{server.port}"}
    )
    try:
        send_confirmation_email.apply_async(args=(order.pk,))

        assert wait_until(lambda: "Retry in 5s" in worker.log(), timeout=30), worker.log()
        order.refresh_from_db()
        assert order.confirmation_sent_at is None

        server.start()
        assert wait_until(lambda: len(server.envelopes) == 1, timeout=30), worker.log()
        assert wait_until(
            lambda: Order.objects.filter(pk=order.pk, confirmation_sent_at__isnull=False).exists(),
            timeout=10,
        )
        assert wait_until(lambda: "succeeded" in worker.log(), timeout=10), worker.log()
        (message,) = server.messages()
        assert_is_the_confirmation_of(message, order, customer)
    finally:
        worker.stop()
        server.stop()
    assert len(server.envelopes) == 1
