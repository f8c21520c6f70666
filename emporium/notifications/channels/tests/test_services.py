"""Enqueueing, claiming, retries, dead letters and replay, on whatever database the run has."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from emporium.core.errors import InvalidInput
from emporium.core.tests.plans import planner_settings, plans_of, statistics_taken_now
from emporium.notifications.channels import rate_limits, services
from emporium.notifications.channels.models import Delivery, DeliveryStatus, DeviceToken
from emporium.notifications.channels.outcomes import Outcome, OutcomeResult
from emporium.notifications.channels.services import DeliveryRequest, channel_deliveries_enqueue
from emporium.notifications.channels.tests.factories import UserFactory, delivery_requests

pytestmark = pytest.mark.django_db


def test_enqueue_is_idempotent_on_channel_and_dedup_key(
    django_capture_on_commit_callbacks: Any,
) -> None:
    users = UserFactory.create_batch(3)
    requests = delivery_requests(users, channel="email") + delivery_requests(users, channel="push")
    with django_capture_on_commit_callbacks(execute=True):
        assert channel_deliveries_enqueue(requests=requests) == 6
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert channel_deliveries_enqueue(requests=requests + requests[:2]) == 0
    assert callbacks == []  # nothing new: nothing queued
    assert Delivery.objects.count() == 6
    assert len(mail.outbox) == 3  # each e-mail went out once


def test_a_repeated_key_within_one_call_is_stored_once() -> None:
    user = UserFactory()
    requests = delivery_requests([user], channel="email") * 3
    assert channel_deliveries_enqueue(requests=requests) == 1
    assert Delivery.objects.count() == 1


def test_one_invalid_request_refuses_the_lot_and_writes_nothing() -> None:
    user = UserFactory()
    good = delivery_requests([user], channel="email")[0]
    bad = DeliveryRequest(
        recipient_id=user.pk,
        kind="order.paid",
        channel="fax",
        title="t",
        body="b" * 5000,
        data={},
        dedup_key="k",
        critical=False,
    )
    with pytest.raises(InvalidInput) as raised:
        channel_deliveries_enqueue(requests=[good, bad])
    assert raised.value.details == {
        "requests": {1: ["unknown channel 'fax'", "body is longer than 4000 characters"]}
    }
    assert Delivery.objects.count() == 0


def test_push_without_a_provider_goes_to_the_file(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    user, lonely = UserFactory(), UserFactory()
    DeviceToken.objects.create(user=user, platform="android", token="a" * 40)
    with django_capture_on_commit_callbacks(execute=True):
        channel_deliveries_enqueue(requests=delivery_requests([user, lonely], channel="push"))
    lines = settings.NOTIFICATION_PUSH_FILE_PATH.read_text().splitlines()
    assert [json.loads(line)["message"]["token"] for line in lines] == ["a" * 40]
    message = json.loads(lines[0])["message"]
    assert message["notification"] == {
        "title": "Your order is paid",
        "body": "Order 42 is paid and being packed.",
    }
    assert message["data"]["order_id"] == "42"  # FCM data values are strings
    statuses = dict(Delivery.objects.values_list("recipient_id", "status"))
    assert statuses == {user.pk: DeliveryStatus.SENT, lonely.pk: DeliveryStatus.SKIPPED}


def _stored(users: list[Any], channel: str = "email") -> list[int]:
    channel_deliveries_enqueue(
        requests=delivery_requests(users, channel=channel)
    )  # not committed: not sent
    return list(Delivery.objects.order_by("id").values_list("id", flat=True))


def test_a_claimed_row_is_not_claimed_again_until_its_lease_runs_out(settings: Any) -> None:
    ids = _stored(UserFactory.create_batch(2))
    now = timezone.now()
    assert [
        d.id for d in services.deliveries_claim(channel="email", delivery_ids=ids, now=now)
    ] == ids
    assert services.deliveries_claim(channel="email", delivery_ids=ids, now=now) == []
    later = now + timedelta(seconds=settings.NOTIFICATION_CHANNELS_CLAIM_SECONDS + 1)
    again = services.deliveries_claim(channel="email", delivery_ids=ids, now=later)
    assert [(d.id, d.attempts) for d in again] == [(ids[0], 2), (ids[1], 2)]


def test_outcomes_move_rows_to_sent_retry_or_dead(settings: Any) -> None:
    settings.NOTIFICATION_CHANNELS_MAX_ATTEMPTS = 2
    ids = _stored(UserFactory.create_batch(4))
    claimed = services.deliveries_claim(channel="email", delivery_ids=ids)
    recorder = services.OutcomeRecorder(channel="email", by_id={d.id: d for d in claimed})
    recorder.report(Outcome(ids[0], OutcomeResult.SENT))
    recorder.report(Outcome(ids[1], OutcomeResult.TRANSIENT, "SMTP 451 later", retry_after=60))
    recorder.report(Outcome(ids[2], OutcomeResult.PERMANENT, "SMTP 550 no such user"))
    recorder.report(Outcome(ids[3], OutcomeResult.SKIPPED, "the recipient has no e-mail address"))
    recorder.flush()
    rows = {d.id: d for d in Delivery.objects.all()}
    assert [rows[i].status for i in ids] == ["sent", "pending", "dead", "skipped"]
    assert rows[ids[1]].next_attempt_at >= timezone.now() + timedelta(seconds=59)  # Retry-After
    assert rows[ids[2]].last_error == "SMTP 550 no such user"
    assert recorder.retried == {60: [ids[1]]}
    # The second transient failure spends the attempts: parked with its error.
    retry = services.deliveries_claim(
        channel="email", delivery_ids=[ids[1]], now=timezone.now() + timedelta(minutes=5)
    )
    recorder = services.OutcomeRecorder(channel="email", by_id={d.id: d for d in retry})
    recorder.report(Outcome(ids[1], OutcomeResult.TRANSIENT, "SMTP 451 still later"))
    recorder.flush()
    row = Delivery.objects.get(id=ids[1])
    assert (row.status, row.attempts, row.last_error) == ("dead", 2, "SMTP 451 still later")


def test_an_outcome_for_a_row_no_longer_claimed_changes_nothing() -> None:
    ids = _stored(UserFactory.create_batch(1))
    claimed = services.deliveries_claim(channel="email", delivery_ids=ids)
    Delivery.objects.filter(id=ids[0]).update(status=DeliveryStatus.SENT)  # another worker won
    recorder = services.OutcomeRecorder(channel="email", by_id={d.id: d for d in claimed})
    recorder.report(Outcome(ids[0], OutcomeResult.PERMANENT, "late"))
    recorder.flush()
    assert Delivery.objects.get(id=ids[0]).status == DeliveryStatus.SENT


def test_backoff_grows_with_jitter_and_respects_retry_after(settings: Any) -> None:
    settings.NOTIFICATION_CHANNELS_RETRY_BASE_SECONDS = 2.0
    settings.NOTIFICATION_CHANNELS_RETRY_CAP_SECONDS = 30.0
    first = [services.retry_delay(attempts=1) for _ in range(200)]
    fourth = [services.retry_delay(attempts=4) for _ in range(200)]
    assert 1.0 <= min(first)
    assert max(first) <= 2.0
    assert len(set(first)) > 100  # jittered, not one fixed delay
    assert 8.0 <= min(fourth)
    assert max(fourth) <= 16.0
    assert max(services.retry_delay(attempts=20) for _ in range(50)) <= 30.0
    assert services.retry_delay(attempts=1, retry_after=45) == 45


def _park(ids: list[int], error: str, channel: str = "email") -> None:
    Delivery.objects.filter(id__in=ids).update(
        status=DeliveryStatus.DEAD, last_error=error, attempts=8, finished_at=timezone.now()
    )


def test_replaying_twice_sends_once(django_capture_on_commit_callbacks: Any) -> None:
    ids = _stored(UserFactory.create_batch(3))
    _park(ids[:2], "SMTP 451 mailbox busy")
    _park(ids[2:], "SMTP 552 too big")
    with django_capture_on_commit_callbacks(execute=True):
        assert services.dead_letters_replay(error_contains="451") == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert services.dead_letters_replay(error_contains="451") == 0
        assert services.dead_letter_replay(delivery_id=ids[0]) is False
    assert len(mail.outbox) == 2
    statuses = dict(Delivery.objects.values_list("id", "status"))
    assert statuses == {ids[0]: "sent", ids[1]: "sent", ids[2]: "dead"}
    assert Delivery.objects.get(id=ids[0]).attempts == 1  # counted afresh


def test_the_sweep_queues_overdue_and_abandoned_rows_only(settings: Any) -> None:
    ids = _stored(UserFactory.create_batch(3))
    now = timezone.now()
    long_ago = now - timedelta(minutes=10)
    Delivery.objects.filter(id=ids[0]).update(next_attempt_at=long_ago)  # overdue retry
    Delivery.objects.filter(id=ids[1]).update(
        status=DeliveryStatus.CLAIMED, claimed_until=long_ago, next_attempt_at=long_ago
    )  # its worker died
    Delivery.objects.filter(id=ids[2]).update(next_attempt_at=now + timedelta(minutes=10))
    assert services.deliveries_due_dispatch(now=now) == 2
    statuses = dict(Delivery.objects.values_list("id", "status"))
    assert statuses == {ids[0]: "sent", ids[1]: "sent", ids[2]: "pending"}
    assert len(mail.outbox) == 2


def test_device_tokens_are_validated_and_move_between_accounts() -> None:
    first, second = UserFactory(), UserFactory()
    token = "fcm-token_0123456789:abcdef"
    services.device_token_register(user_id=first.pk, token=token, platform="android")
    services.device_token_register(user_id=second.pk, token=token, platform="android")
    assert list(DeviceToken.objects.values_list("user_id", flat=True)) == [second.pk]
    for bad, field in [("short", "token"), ("x" * 30 + " y", "token"), ("x" * 600, "token")]:
        with pytest.raises(InvalidInput) as raised:
            services.device_token_register(user_id=first.pk, token=bad, platform="android")
        assert field in raised.value.details
    with pytest.raises(InvalidInput):
        services.device_token_register(user_id=first.pk, token="y" * 40, platform="pager")
    assert DeviceToken.objects.count() == 1


def test_the_rate_limit_makes_a_second_burst_wait(settings: Any) -> None:
    settings.NOTIFICATION_CHANNELS = {
        **settings.NOTIFICATION_CHANNELS,
        "email": {"QUEUE": "email", "BATCH_SIZE": 200, "RATE_PER_SECOND": 40},
    }
    assert rate_limits.chunk_size("email") == 40
    assert rate_limits.acquire(channel="email", count=40) == 0.0
    waited = rate_limits.acquire(channel="email", count=20)
    assert waited > 0  # the first take used the whole second's burst


def test_pruning_deletes_old_finished_deliveries_and_keeps_dead_letters(settings: Any) -> None:
    settings.NOTIFICATION_CHANNELS_RETENTION_DAYS = 30
    ids = _stored(UserFactory.create_batch(4))
    old, recent = timezone.now() - timedelta(days=31), timezone.now() - timedelta(days=29)
    Delivery.objects.filter(id__in=ids[:2]).update(status=DeliveryStatus.SENT, finished_at=old)
    Delivery.objects.filter(id=ids[2]).update(status=DeliveryStatus.DEAD, finished_at=old)
    Delivery.objects.filter(id=ids[3]).update(status=DeliveryStatus.SENT, finished_at=recent)
    assert services.deliveries_prune(batch_size=1) == 2
    assert services.deliveries_prune() == 0
    assert sorted(Delivery.objects.values_list("id", flat=True)) == ids[2:]


def test_the_first_retry_is_the_providers_retry_after_when_it_gave_one(settings: Any) -> None:
    settings.NOTIFICATION_CHANNELS_RETRY_BASE_SECONDS = 2.0
    settings.NOTIFICATION_CHANNELS_RETRY_CAP_SECONDS = 30.0
    assert services.retry_delay(attempts=1, retry_after=0.5) == 0.5
    assert services.retry_delay(attempts=1, retry_after=0.0) == 0.0
    second = [services.retry_delay(attempts=2, retry_after=0.5) for _ in range(200)]
    assert 2.0 <= min(second)
    assert max(second) <= 4.0
    assert len(set(second)) > 100
    assert services.retry_delay(attempts=3, retry_after=45) == 45


def test_a_due_claim_walks_the_due_row_index_whatever_the_statistics_say() -> None:
    # A broadcast stores hundreds of thousands of rows faster than autovacuum
    # analyses the table. Statistics of the empty table, then 3,000 pending
    # push rows: left to choose, the planner combined the due-row and channel
    # indexes and sorted every pending row for each claim of a few hundred.
    if connection.vendor != "postgresql":
        pytest.skip("planner settings are PostgreSQL's")
    statistics_taken_now(Delivery)
    users = UserFactory.create_batch(3)
    now = timezone.now()
    Delivery.objects.bulk_create(
        Delivery(
            channel="push",
            kind="order.paid",
            payload={"title": "t", "body": "b"},
            dedup_key=f"stale-{n}",
            status=DeliveryStatus.PENDING,
            next_attempt_at=now - timedelta(seconds=n % 60),
            recipient=users[n % 3],
        )
        for n in range(3000)
    )
    with plans_of("ORDER BY next_attempt_at LIMIT") as plans:
        claimed = services.deliveries_claim_due(channel="push", limit=200, now=now)
    assert len(claimed) == 200
    assert len(plans) == 1
    assert "Index Scan using notif_delivery_due_idx" in plans[0], plans[0]
    assert "Sort" not in plans[0], plans[0]
    assert "Bitmap" not in plans[0], plans[0]
    assert planner_settings() == ("on", "on")  # for the claim only
