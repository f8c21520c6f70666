"""E-mail into real local SMTP servers (aiosmtpd) that fail on purpose."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from emporium.notifications.channels import services
from emporium.notifications.channels.models import Delivery, DeliveryStatus
from emporium.notifications.channels.tests.factories import UserFactory, delivery_requests
from simulators.smtp_sink import SinkHandler, SinkOptions, SmtpSink, SmtpSinkProcesses
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


def _enqueue(users: list[Any], **extra: Any) -> list[int]:
    services.channel_deliveries_enqueue(requests=delivery_requests(users, channel="email", **extra))
    return list(Delivery.objects.order_by("id").values_list("id", flat=True))


def _send(ids: list[int], *, later: bool = False) -> dict[str, int]:
    now = timezone.now() + timedelta(hours=1) if later else None
    return services.deliveries_send(channel="email", delivery_ids=ids, now=now)


def _message_id(delivery_id: int) -> str:
    return f"<notification.{delivery_id}@example.com>"


@pytest.fixture(autouse=True)
def _sender(settings: Any) -> None:
    settings.DEFAULT_FROM_EMAIL = "Emporium <shop@example.com>"


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_batch_goes_through_one_session_with_text_and_html(
    settings: Any, pipelining: bool
) -> None:
    with SmtpSink(SinkHandler(pipelining=pipelining)) as sink:
        settings.NOTIFICATION_EMAIL_ENDPOINTS = [sink.endpoint()]
        users = UserFactory.create_batch(25)
        ids = _enqueue(users)
        assert _send(ids) == {"sent": 25}
        assert sink.handler.stats() == {
            "accepted": 25,
            "distinct": 25,
            "duplicates": 0,
            "transient": 0,
            "permanent": 0,
            "sessions": 1,
        }
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}
    assert set(sink.handler.received) == {_message_id(i) for i in ids}


def test_the_message_is_rendered_from_the_kind_template_or_the_default(settings: Any) -> None:
    from emporium.notifications.channels.email_adapter import email_render

    user = UserFactory(email="ada@example.com")
    ids = _enqueue([user], title="Paid <fast> déjà", body="Line one\nLine two. " + "é" * 100)
    delivery = Delivery.objects.select_related("recipient").get(id=ids[0])
    raw = email_render(delivery).as_bytes(sender="Emporium <shop@example.com>")
    assert raw.isascii()  # 7-bit
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["To"] == "ada@example.com"
    assert parsed["From"] == "Emporium <shop@example.com>"
    assert parsed["Subject"] == "Paid <fast> déjà"
    assert parsed["Message-ID"] == _message_id(delivery.id)
    # Parts travel with CRLF line ends; compare their lines.
    text = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    html = parsed.get_body(("html",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert "Paid <fast> déjà" in text
    assert "Line one\nLine two. " + "é" * 100 in text
    assert "Paid &lt;fast&gt;" in html
    assert "Line one<br>Line two" in html
    assert "https://shop.example/orders/42" in text
    assert 'href="https://shop.example/orders/42"' in html


def test_a_4xx_reply_is_retried_later_and_the_message_arrives_once(settings: Any) -> None:
    users = UserFactory.create_batch(3)
    ids = _enqueue(users)
    handler = SinkHandler(fail_first={_message_id(ids[1])})
    with SmtpSink(handler) as sink:
        settings.NOTIFICATION_EMAIL_ENDPOINTS = [sink.endpoint()]
        assert _send(ids) == {"sent": 2, "transient": 1}
        retried = Delivery.objects.get(id=ids[1])
        assert (retried.status, retried.attempts) == (DeliveryStatus.PENDING, 1)
        assert retried.last_error.startswith("SMTP 451")
        assert retried.next_attempt_at > timezone.now()
        assert _send(ids) == {}  # not due yet: nothing claimed
        assert _send(ids, later=True) == {"sent": 1}
    assert handler.received[_message_id(ids[1])] == 1
    assert handler.stats()["duplicates"] == 0
    assert Delivery.objects.get(id=ids[1]).status == DeliveryStatus.SENT


def test_a_421_mid_batch_opens_a_new_connection_for_the_rest(settings: Any) -> None:
    ids = _enqueue(UserFactory.create_batch(5))
    handler = SinkHandler(close_first={_message_id(ids[1])})
    with SmtpSink(handler) as sink:
        settings.NOTIFICATION_EMAIL_ENDPOINTS = [sink.endpoint()]
        assert _send(ids) == {"sent": 4, "transient": 1}
        assert handler.stats()["sessions"] == 2
        assert _send(ids, later=True) == {"sent": 1}
    assert set(handler.received.values()) == {1}
    assert len(handler.received) == 5


def test_a_batch_reads_its_rows_once_in_the_claim_and_its_recipients_in_one_query(
    settings: Any,
) -> None:
    # The claim returns only the columns the adapter and the recorder read; one
    # of the others read later would cost a query per row. The claim in one
    # statement is PostgreSQL's; SQLite's takes the lease through the ORM.
    if connection.vendor != "postgresql":
        pytest.skip("the claim in one statement is PostgreSQL's")
    users = UserFactory.create_batch(30)
    ids = _enqueue(users)
    delivery_table = Delivery._meta.db_table
    user_table = type(users[0])._meta.db_table
    handler = SinkHandler(fail_first={_message_id(ids[3])}, refused={users[5].email})
    with SmtpSink(handler) as sink, CaptureQueriesContext(connection) as queries:
        settings.NOTIFICATION_EMAIL_ENDPOINTS = [sink.endpoint()]
        assert _send(ids) == {"sent": 28, "transient": 1, "permanent": 1}
    statements = [query["sql"] for query in queries.captured_queries]
    assert [sql for sql in statements if f'FROM "{user_table}"' in sql] == statements[1:2]
    assert [sql for sql in statements if f'FROM "{delivery_table}"' in sql] == []
    assert len(statements) <= 6  # claim, recipients, then the outcomes (a flush or two)
    assert Delivery.objects.get(id=ids[3]).status == DeliveryStatus.PENDING
    assert Delivery.objects.get(id=ids[5]).status == DeliveryStatus.DEAD


def test_a_5xx_reply_is_parked_without_a_retry(settings: Any) -> None:
    refused, accepted = UserFactory(email="gone@example.com"), UserFactory()
    ids = _enqueue([refused, accepted])
    handler = SinkHandler(refused={"gone@example.com"})
    with SmtpSink(handler) as sink:
        settings.NOTIFICATION_EMAIL_ENDPOINTS = [sink.endpoint()]
        assert _send(ids) == {"permanent": 1, "sent": 1}
        assert _send(ids, later=True) == {}
    dead = Delivery.objects.get(recipient=refused)
    assert (dead.status, dead.attempts) == (DeliveryStatus.DEAD, 1)
    assert dead.last_error.startswith("SMTP 550")
    assert handler.stats()["accepted"] == 1


def test_an_endpoint_that_is_down_fails_over_to_the_second(settings: Any) -> None:
    down = {"HOST": "127.0.0.1", "PORT": free_port(), "TIMEOUT": 2}
    with SmtpSink(SinkHandler()) as sink:
        settings.NOTIFICATION_EMAIL_ENDPOINTS = [down, sink.endpoint()]
        ids = _enqueue(UserFactory.create_batch(5))
        assert _send(ids) == {"sent": 5}
        assert sink.handler.stats()["accepted"] == 5


def test_a_server_lost_mid_batch_leaves_the_rest_for_a_retry(settings: Any) -> None:
    sink = SmtpSink(SinkHandler()).start()
    settings.NOTIFICATION_EMAIL_ENDPOINTS = [{**sink.endpoint(), "TIMEOUT": 2}]
    ids = _enqueue(UserFactory.create_batch(4))
    sink.stop()  # nothing answers any more
    assert _send(ids) == {"transient": 4}
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.PENDING}
    with SmtpSink(SinkHandler(), port=sink.port) as back:
        assert _send(ids, later=True) == {"sent": 4}
        assert back.handler.stats()["distinct"] == 4


def test_transient_failures_until_the_attempts_are_spent_park_the_message(settings: Any) -> None:
    settings.NOTIFICATION_CHANNELS_MAX_ATTEMPTS = 3
    ids = _enqueue(UserFactory.create_batch(1))
    with SmtpSink(SinkHandler(transient_rate=1.0)) as sink:
        settings.NOTIFICATION_EMAIL_ENDPOINTS = [sink.endpoint()]
        for hours in (0, 1, 2):
            now = timezone.now() + timedelta(hours=hours)
            services.deliveries_send(channel="email", delivery_ids=ids, now=now)
        assert sink.handler.stats()["transient"] == 3
    row = Delivery.objects.get(id=ids[0])
    assert (row.status, row.attempts) == (DeliveryStatus.DEAD, 3)
    assert row.last_error.startswith("SMTP 451")


def test_a_recipient_without_an_address_is_skipped(settings: Any) -> None:
    with SmtpSink(SinkHandler()) as sink:
        settings.NOTIFICATION_EMAIL_ENDPOINTS = [sink.endpoint()]
        user = UserFactory()
        type(user).objects.filter(pk=user.pk).update(email="")
        ids = _enqueue([user])
        assert _send(ids) == {"skipped": 1}
        assert sink.handler.stats()["sessions"] == 0  # no session opened for nothing


def test_a_template_naming_the_recipient_is_rendered_for_each(settings: Any, tmp_path: Any) -> None:
    from emporium.notifications.channels.email_adapter import email_render

    directory = tmp_path / "notification_channels" / "email"
    directory.mkdir(parents=True)
    (directory / "welcome_each.txt").write_text("Hello {{ recipient.username }}: {{ body }}")
    (directory / "welcome_each.html").write_text("<p>{{ body }}</p>")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    ada, bob = UserFactory(username="ada"), UserFactory(username="bob")
    _enqueue([ada, bob], kind="welcome_each", body="welcome")
    rendered = [
        email_render(delivery)
        for delivery in Delivery.objects.select_related("recipient").order_by("id")
    ]
    assert [item.text for item in rendered] == ["Hello ada: welcome", "Hello bob: welcome"]
    assert [item.html for item in rendered] == ["<p>welcome</p>", "<p>welcome</p>"]


def test_batches_through_a_sink_of_several_processes_arrive_once_each(settings: Any) -> None:
    # The benchmark's set-up: one port served by several processes, 451s drawn at
    # random; every message is retried until accepted and counted once over all.
    ids = _enqueue(UserFactory.create_batch(120))
    options = SinkOptions(transient_rate=0.2, seed=11)
    with SmtpSinkProcesses(options, processes=3) as sink:
        settings.NOTIFICATION_EMAIL_ENDPOINTS = [sink.endpoint()]
        counts: list[dict[str, int]] = []
        for hours in range(8):
            counts += [_send(ids[start : start + 40], later=hours > 0) for start in (0, 40, 80)]
            if not Delivery.objects.exclude(status=DeliveryStatus.SENT).exists():
                break
        stats = sink.stats()
        received = sink.received()
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}
    assert received == {_message_id(i): 1 for i in ids}
    assert (stats["accepted"], stats["distinct"], stats["duplicates"]) == (120, 120, 0)
    assert stats["transient"] == sum(count.get("transient", 0) for count in counts) > 0
    assert (
        stats["sessions"]
        == sum(stats["sessions_by_process"])
        == len([count for count in counts if count])
    )
