"""Push against the simulated provider (simulators/push) over real HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from emporium.notifications.channels import services
from emporium.notifications.channels.models import Delivery, DeliveryStatus, DeviceToken
from emporium.notifications.channels.tests.factories import UserFactory, delivery_requests
from simulators.push.server import PushSimulatorThread

pytestmark = pytest.mark.django_db


def _enqueue(users: list[Any]) -> list[int]:
    services.channel_deliveries_enqueue(requests=delivery_requests(users, channel="push"))
    return list(Delivery.objects.order_by("id").values_list("id", flat=True))


def _send(ids: list[int], *, later: bool = False) -> dict[str, int]:
    now = timezone.now() + timedelta(hours=1) if later else None
    return services.deliveries_send(channel="push", delivery_ids=ids, now=now)


def _token(user: Any, token: str) -> DeviceToken:
    return DeviceToken.objects.create(user=user, platform="android", token=token)


def test_every_device_of_every_recipient_gets_the_message(
    push_simulator: PushSimulatorThread,
) -> None:
    users = UserFactory.create_batch(20)
    for user in users:
        _token(user, f"phone-{user.pk:04d}-" + "p" * 20)
        _token(user, f"tablet-{user.pk:04d}-" + "t" * 20)
    ids = _enqueue(users)
    assert _send(ids) == {"sent": 20}
    stats = push_simulator.state.stats()
    assert (stats["accepted"], stats["distinct"], stats["duplicates"]) == (40, 40, 0)
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}


def test_a_dead_token_is_removed_and_the_live_one_still_served(
    push_simulator: PushSimulatorThread,
) -> None:
    user, gone = UserFactory(), UserFactory()
    live = _token(user, "live-" + "a" * 30)
    _token(user, "dead-" + "b" * 30)
    _token(gone, "dead-" + "c" * 30)
    ids = _enqueue([user, gone])
    assert _send(ids) == {"sent": 1, "skipped": 1}
    assert list(DeviceToken.objects.values_list("id", flat=True)) == [live.id]
    skipped = Delivery.objects.get(recipient=gone)
    assert (skipped.status, skipped.last_error) == (
        DeliveryStatus.SKIPPED,
        "every device token was unregistered",
    )
    assert push_simulator.state.stats()["unregistered"] == 2


def test_a_transient_failure_is_retried_after_retry_after_and_sent_once(
    push_simulator: PushSimulatorThread,
) -> None:
    users = UserFactory.create_batch(2)
    for user in users:
        _token(user, f"device-{user.pk}-" + "d" * 20)
    ids = _enqueue(users)
    push_simulator.state.control({"failure_rate": 1.0, "retry_after": 30})
    before = timezone.now()
    assert _send(ids) == {"transient": 2}
    rows = list(Delivery.objects.order_by("id"))
    assert {row.status for row in rows} == {DeliveryStatus.PENDING}
    assert all(row.next_attempt_at >= before + timedelta(seconds=30) for row in rows)
    assert rows[0].last_error.startswith(("HTTP 503", "HTTP 429"))
    push_simulator.state.control({"failure_rate": 0.0})
    assert _send(ids, later=True) == {"sent": 2}
    stats = push_simulator.state.stats()
    assert (stats["accepted"], stats["duplicates"], stats["transient"]) == (2, 0, 2)


def test_a_device_already_reached_is_not_sent_the_retry(
    push_simulator: PushSimulatorThread,
) -> None:
    user = UserFactory()
    first = _token(user, "first-" + "f" * 30)
    _token(user, "second-" + "s" * 30)
    ids = _enqueue([user])
    # The first device accepted; the second failed transiently (as recorded by a batch).
    claimed = services.deliveries_claim(channel="push", delivery_ids=ids)
    from emporium.notifications.channels.outcomes import Outcome, OutcomeResult

    recorder = services.OutcomeRecorder(channel="push", by_id={d.id: d for d in claimed})
    recorder.report(Outcome(ids[0], OutcomeResult.TRANSIENT, "HTTP 503", sent_to=(first.id,)))
    recorder.flush()
    assert _send(ids, later=True) == {"sent": 1}
    assert set(push_simulator.state.received) == {("second-" + "s" * 30, str(ids[0]))}


def test_a_provider_that_cannot_be_reached_is_a_transient_failure(settings: Any) -> None:
    from tests.support.processes import free_port

    settings.PUSH_PROVIDER_URL = f"http://127.0.0.1:{free_port()}"
    user = UserFactory()
    _token(user, "unreachable-" + "u" * 20)
    ids = _enqueue([user])
    assert _send(ids) == {"transient": 1}
    assert Delivery.objects.get(id=ids[0]).last_error.startswith("connection: ConnectError")


def test_no_registered_device_is_skipped(push_simulator: PushSimulatorThread) -> None:
    ids = _enqueue([UserFactory()])
    assert _send(ids) == {"skipped": 1}
    assert Delivery.objects.get(id=ids[0]).last_error == "no device registered"
    assert push_simulator.state.stats()["requests"] == 0


class _RawServer:
    """A TCP server on a thread that answers each connection with ``answer(request_bytes)``.

    ``answer`` returns the bytes to write (or None to write nothing); the
    connection is closed after each answer when ``close`` is set.
    """

    def __init__(self, answer: Any, *, close: bool) -> None:
        import socket
        import threading

        self.answer, self.close = answer, close
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.open: list[Any] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self.open.append(connection)
            threading.Thread(target=self._one, args=(connection,), daemon=True).start()

    def _one(self, connection: Any) -> None:
        buffer = b""
        with connection:
            while True:
                try:
                    data = connection.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                head, separator, rest = buffer.partition(b"\r\n\r\n")
                if not separator:
                    continue
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    continue
                buffer = rest[length:]
                reply = self.answer(head + b"\r\n\r\n" + rest[:length])
                if reply is None:
                    continue
                connection.sendall(reply)
                if self.close:
                    return

    def stop(self) -> None:
        self.listener.close()
        for connection in self.open:
            connection.close()


def test_a_provider_that_never_answers_is_a_transient_failure(settings: Any) -> None:
    server = _RawServer(lambda request: None, close=False)
    settings.PUSH_PROVIDER_URL = f"http://127.0.0.1:{server.port}"
    settings.PUSH_PROVIDER_TIMEOUT_SECONDS = 0.5
    try:
        users = UserFactory.create_batch(3)
        for user in users:
            _token(user, f"silent-{user.pk}-" + "s" * 20)
        ids = _enqueue(users)
        assert _send(ids) == {"transient": 3}
        errors = set(Delivery.objects.values_list("last_error", flat=True))
        assert errors == {"connection: ReadTimeout no answer in time"}
    finally:
        server.stop()


def test_a_provider_closing_each_connection_after_its_answer_still_gets_every_message(
    settings: Any,
) -> None:
    received: list[bytes] = []

    def answer(request: bytes) -> bytes:
        received.append(request)
        body = b'{"name": "projects/p/messages/1"}'
        return (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )

    server = _RawServer(answer, close=True)
    settings.PUSH_PROVIDER_URL = f"http://127.0.0.1:{server.port}/base"
    settings.PUSH_PROVIDER_ACCESS_TOKEN = "secret-access-token"
    try:
        users = UserFactory.create_batch(40)
        for user in users:
            _token(user, f"closing-{user.pk}-" + "c" * 20)
        ids = _enqueue(users)
        assert _send(ids) == {"sent": 40}
        assert len(received) == 40
        assert server.connections == 40  # a closed connection is never reused
        first = received[0]
        assert first.startswith(b"POST /base/v1/projects/")
        assert b"\r\nauthorization: Bearer secret-access-token\r\n" in first
    finally:
        server.stop()


def test_the_first_retry_goes_at_retry_after_and_the_next_ones_back_off(
    push_simulator: PushSimulatorThread, settings: Any
) -> None:
    settings.NOTIFICATION_CHANNELS_RETRY_BASE_SECONDS = 10.0  # backoff alone: 5 to 10 s
    user = UserFactory()
    _token(user, "flaky-" + "f" * 30)
    ids = _enqueue([user])
    push_simulator.state.control({"failure_rate": 1.0, "retry_after": 2})
    before = timezone.now()
    assert _send(ids) == {"transient": 1}
    first = Delivery.objects.get(id=ids[0])
    assert first.attempts == 1
    assert before + timedelta(seconds=2) <= first.next_attempt_at
    assert first.next_attempt_at <= timezone.now() + timedelta(seconds=2)  # not the backoff
    # The second failure: backoff with jitter (attempt 2: 10 to 20 s), never below Retry-After.
    later = first.next_attempt_at + timedelta(milliseconds=1)
    assert services.deliveries_send(channel="push", delivery_ids=ids, now=later) == {"transient": 1}
    second = Delivery.objects.get(id=ids[0])
    assert second.attempts == 2
    assert timezone.now() + timedelta(seconds=9) <= second.next_attempt_at
    assert second.next_attempt_at <= timezone.now() + timedelta(seconds=20)
    stats = push_simulator.state.stats()
    assert (stats["accepted"], stats["transient"]) == (0, 2)


def test_a_batch_goes_on_with_the_channels_due_rows_and_sends_each_once(
    push_simulator: PushSimulatorThread, settings: Any
) -> None:
    settings.NOTIFICATION_CHANNELS = {
        **settings.NOTIFICATION_CHANNELS,
        "push": {"QUEUE": "push", "BATCH_SIZE": 40, "RATE_PER_SECOND": 0, "CONCURRENCY": 8},
    }
    users = UserFactory.create_batch(150)
    for user in users:
        _token(user, f"device-{user.pk:05d}-" + "d" * 20)
    _token(users[0], "dead-" + "x" * 30)
    ids = _enqueue(users)
    # Not due yet, and another channel's row: neither is taken.
    waiting = Delivery.objects.get(id=ids[-1])
    Delivery.objects.filter(id=waiting.id).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    services.channel_deliveries_enqueue(requests=delivery_requests(users[:1], channel="email"))
    counts = services.deliveries_send(channel="push", delivery_ids=ids[:40], continue_with_due=True)
    assert counts == {"sent": 149}
    push_rows = Delivery.objects.filter(channel="push")
    assert set(push_rows.exclude(id=waiting.id).values_list("status", flat=True)) == {"sent"}
    assert Delivery.objects.get(id=waiting.id).status == DeliveryStatus.PENDING
    assert Delivery.objects.get(channel="email").status == DeliveryStatus.PENDING
    stats = push_simulator.state.stats()
    assert (stats["accepted"], stats["distinct"], stats["duplicates"]) == (149, 149, 0)
    assert stats["unregistered"] == 1  # the dead token, asked once and removed
    assert not DeviceToken.objects.filter(token__startswith="dead-").exists()
    # Its own batch task, arriving late, finds its rows sent and sends nothing.
    assert services.deliveries_send(channel="push", delivery_ids=ids[40:80]) == {}
