"""Delivery of notifications by e-mail and push: enqueue, send in batches, park, replay.

The notifications app decides who gets what and calls
:func:`channel_deliveries_enqueue`; this module stores one ``Delivery`` row per
(channel, dedup key) with a set-based insert and, after commit, hands the new
rows to Celery in batches (one task per batch, never one per message). A batch
task claims its rows, waits for the channel's rate limit, sends them through
the channel's adapter and records each outcome (see ``models`` for the states).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from emporium.core.db.connection import planner_methods_off
from emporium.core.errors import InvalidInput, NotFound
from emporium.notifications.channels import email_adapter, push_adapter, rate_limits
from emporium.notifications.channels.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    DevicePlatform,
    DeviceToken,
    channel_config,
)
from emporium.notifications.channels.outcomes import Outcome, OutcomeResult

logger = logging.getLogger(__name__)

DELIVER_BATCH_TASK = "notification_channels.deliver_batch"
MAX_TITLE_LENGTH = 200
MAX_BODY_LENGTH = 4000
MAX_DEDUP_KEY_LENGTH = 200
MAX_KIND_LENGTH = 64
# Rows per INSERT statement: large enough to amortise the round trip, small
# enough to keep one statement's parameters well under PostgreSQL's limit.
_INSERT_CHUNK = 1000


@dataclass(frozen=True)
class DeliveryRequest:
    recipient_id: int
    kind: str
    channel: str  # "email" | "push"
    title: str
    body: str
    data: dict[str, Any]
    dedup_key: str
    critical: bool


def _request_problems(request: DeliveryRequest) -> list[str]:
    problems = []
    if request.channel not in Channel.values:
        problems.append(f"unknown channel {request.channel!r}")
    if not request.kind or len(request.kind) > MAX_KIND_LENGTH:
        problems.append("kind must be 1 to 64 characters")
    if not request.dedup_key or len(request.dedup_key) > MAX_DEDUP_KEY_LENGTH:
        problems.append("dedup_key must be 1 to 200 characters")
    if len(request.title) > MAX_TITLE_LENGTH:
        problems.append("title is longer than 200 characters")
    if len(request.body) > MAX_BODY_LENGTH:
        problems.append("body is longer than 4000 characters")
    if not isinstance(request.data, dict):
        problems.append("data must be an object")  # type: ignore[unreachable]
    return problems


def channel_deliveries_enqueue(*, requests: Sequence[DeliveryRequest]) -> int:
    """Stores the deliveries that do not exist yet and sends them after commit.

    Idempotent on (channel, dedup key): a request whose key is already stored,
    in any state, is ignored, so a re-delivered event or a retried broadcast
    batch never sends twice. Returns how many deliveries were new. Every
    request is validated first; one bad request refuses the lot (``InvalidInput``)
    and nothing is written. Call it inside the caller's transaction: the rows
    commit with it, and the batches are queued only once it has committed.
    """
    problems = {
        index: found
        for index, request in enumerate(requests)
        if (found := _request_problems(request))
    }
    if problems:
        raise InvalidInput("Some deliveries are invalid.", details={"requests": problems})
    if not requests:
        return 0
    now = timezone.now()
    new: dict[str, list[int]] = {}
    with transaction.atomic():
        for start in range(0, len(requests), _INSERT_CHUNK):
            for delivery_id, channel in _insert_ignoring_duplicates(
                requests[start : start + _INSERT_CHUNK], now=now
            ):
                new.setdefault(channel, []).append(delivery_id)
        if new:
            transaction.on_commit(lambda: deliveries_dispatch(ids_by_channel=new))
    return sum(len(ids) for ids in new.values())


def _insert_ignoring_duplicates(
    requests: Sequence[DeliveryRequest], *, now: datetime
) -> list[tuple[int, str]]:
    """One INSERT ... ON CONFLICT DO NOTHING RETURNING for the chunk: (id, channel) of new rows.

    On PostgreSQL the values travel as one array per column (``unnest``), so the
    statement's text is the same for every chunk: a VALUES list of a thousand
    rows cost the client more CPU to compose and bind than the server to insert.
    """
    unique: dict[tuple[str, str], DeliveryRequest] = {}
    for request in requests:  # ON CONFLICT cannot touch the same row twice in one statement
        unique.setdefault((request.channel, request.dedup_key), request)
    payloads = [
        json.dumps({"title": request.title, "body": request.body, "data": request.data})
        for request in unique.values()
    ]
    table = Delivery._meta.db_table
    columns = (
        "channel, recipient_id, kind, payload, critical, dedup_key,"
        " status, attempts, next_attempt_at, last_error, sent_to, created_at"
    )
    parameters: list[Any]
    if connection.vendor == "postgresql":
        # The table name is the model's; every value is a parameter.
        sql = (
            f"INSERT INTO {table} ({columns})"  # noqa: S608 - the model's table; values are parameters
            " SELECT u.channel, u.recipient_id, u.kind, u.payload::jsonb, u.critical,"
            " u.dedup_key, %s, 0, %s, '', '[]'::jsonb, %s"
            " FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::bool[],"
            " %s::text[]) AS u (channel, recipient_id, kind, payload, critical, dedup_key)"
            " ON CONFLICT (channel, dedup_key) DO NOTHING RETURNING id, channel"
        )
        parameters = [
            DeliveryStatus.PENDING.value,
            now,
            now,
            [request.channel for request in unique.values()],
            [request.recipient_id for request in unique.values()],
            [request.kind for request in unique.values()],
            payloads,
            [request.critical for request in unique.values()],
            [request.dedup_key for request in unique.values()],
        ]
    else:
        row = "(%s, %s, %s, %s, %s, %s, %s, 0, %s, '', %s, %s)"
        parameters = []
        for request, payload in zip(unique.values(), payloads, strict=True):
            parameters += [
                request.channel,
                request.recipient_id,
                request.kind,
                payload,
                request.critical,
                request.dedup_key,
                DeliveryStatus.PENDING.value,
                now,
                "[]",
                now,
            ]
        sql = (
            f"INSERT INTO {table} ({columns})"  # noqa: S608 - the model's table; values are parameters
            f" VALUES {', '.join([row] * len(unique))}"
            " ON CONFLICT (channel, dedup_key) DO NOTHING RETURNING id, channel"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return [(int(found[0]), str(found[1])) for found in cursor.fetchall()]


def _batch_size(channel: str) -> int:
    return int(channel_config(channel)["BATCH_SIZE"])


def deliveries_dispatch(*, ids_by_channel: dict[str, list[int]]) -> int:
    """Queues the deliveries in batches, one task per batch; returns how many batches.

    With tasks in-process (the embedded profile) each batch is sent right here.
    A batch that is queued twice costs one extra claim: only one run claims a row.
    """
    from celery import current_app

    batches = 0
    for channel, ids in ids_by_channel.items():
        size = _batch_size(channel)
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            batches += 1
            if settings.CELERY_TASK_ALWAYS_EAGER:
                deliveries_send(channel=channel, delivery_ids=chunk)
            else:
                current_app.send_task(
                    DELIVER_BATCH_TASK,
                    args=(channel, chunk),
                    queue=channel_config(channel)["QUEUE"],
                )
    return batches


def deliveries_retry_schedule(*, channel: str, delivery_ids: list[int], delay: float) -> None:
    """Queues one task for the rows put back for a retry, due once the last of them is.

    RabbitMQ delays a task by whole seconds (Celery's native delayed delivery
    refuses a countdown below one), so a shorter wait is rounded up to a second.
    """
    if not delivery_ids or settings.CELERY_TASK_ALWAYS_EAGER:
        return  # in-process: the sweep (deliveries_due_dispatch) picks them up
    from celery import current_app

    current_app.send_task(
        DELIVER_BATCH_TASK,
        args=(channel, delivery_ids),
        queue=channel_config(channel)["QUEUE"],
        countdown=max(1.0, delay) if delay > 0 else None,
    )


def _claimable(now: datetime) -> Q:
    return Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now) | Q(
        status=DeliveryStatus.CLAIMED, claimed_until__lt=now
    )


def deliveries_claim(
    *, channel: str, delivery_ids: Sequence[int], now: datetime | None = None
) -> list[Delivery]:
    """Takes the lease on those of the rows that are due and not held; returns them.

    One statement on PostgreSQL: an ``UPDATE ... RETURNING`` over the rows
    locked with SKIP LOCKED (so two workers handed the same batch split it
    instead of waiting on each other). Each claim counts as an attempt.
    E-mail also loads the recipients (the address, and the templates' context).

    Each id is looked up on its own through the primary key (a ``LATERAL``
    subquery that locks, which the planner cannot merge into a join): left to
    choose, the planner of a table without fresh statistics (a large enqueue
    that has not been analysed yet) combined the ``channel`` and due-row
    indexes instead and read every pending row of the channel for each claim.
    """
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        return _rows_claim(
            channel=channel,
            now=now,
            due_sql="SELECT held.id FROM unnest(%s::bigint[]) AS wanted (id) CROSS JOIN LATERAL"
            " (SELECT id FROM {table} WHERE id = wanted.id AND channel = %s"
            " AND ((status = %s AND next_attempt_at <= %s) OR (status = %s AND claimed_until < %s))"
            " FOR UPDATE SKIP LOCKED) AS held",
            due_parameters=[
                sorted(set(delivery_ids)),  # rows locked in primary-key order
                channel,
                DeliveryStatus.PENDING.value,
                now,
                DeliveryStatus.CLAIMED.value,
                now,
            ],
        )
    return _rows_claim_portable(
        channel=channel, now=now, rows=Q(_claimable(now), id__in=list(delivery_ids))
    )


# Planned without these, due rows are read along the due-row index and the
# read stops after the rows it needs. With statistics from before a large
# enqueue the planner believed the pending rows few and chose a bitmap of the
# due-row and channel indexes, then a sort: every pending row read for each
# claim (130 ms for 200,000 of them, against 1.4 ms along the index).
_DUE_ROWS_WALKED = ("bitmapscan", "sort")


def deliveries_claim_due(
    *, channel: str, limit: int, now: datetime | None = None
) -> list[Delivery]:
    """Takes the lease on up to ``limit`` due pending rows of the channel, longest due first.

    What a push worker sends next while its batch's last requests are in
    flight (:func:`deliveries_send`, ``continue_with_due``): the rows of batches
    still queued in RabbitMQ and retries that have come due. The batch tasks
    of those rows then find them held or sent and claim nothing. Rows whose
    lease ran out are left to the sweep, which queues them by id. The rows are
    walked along the due-row index; SKIP LOCKED never waits, so the order in
    which they are locked cannot deadlock.
    """
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        with planner_methods_off(*_DUE_ROWS_WALKED):
            return _rows_claim(
                channel=channel,
                now=now,
                due_sql="SELECT id FROM {table} WHERE status = %s AND next_attempt_at <= %s"
                " AND channel = %s ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED",
                due_parameters=[DeliveryStatus.PENDING.value, now, channel, limit],
            )
    return _rows_claim_portable(
        channel=channel,
        now=now,
        rows=Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now),
        limit=limit,
    )


# What the adapters and the outcome recorder read of a claimed row. The other
# columns are left out of a claim: parsing the four timestamps of a batch's rows
# was most of the worker's CPU spent on the claim.
_CLAIM_FIELDS = (
    "id",
    "channel",
    "recipient",
    "kind",
    "payload",
    "status",
    "attempts",
    "sent_to",
)


def _rows_claim(
    *, channel: str, now: datetime, due_sql: str, due_parameters: list[Any]
) -> list[Delivery]:
    """PostgreSQL: one ``UPDATE ... RETURNING`` leasing the rows ``due_sql`` selects and locks."""
    lease = timedelta(seconds=settings.NOTIFICATION_CHANNELS_CLAIM_SECONDS)
    table = Delivery._meta.db_table
    fields = [field for field in Delivery._meta.concrete_fields if field.name in _CLAIM_FIELDS]
    columns = ", ".join(f"t.{field.column}" for field in fields)
    # The table and column names are the model's; every value is a parameter.
    claimed = list(
        Delivery.objects.raw(
            f"WITH due AS ({due_sql.format(table=table)})"  # noqa: S608 - the model's table and this module's SQL; values are parameters
            f" UPDATE {table} t SET status = %s, claimed_until = %s, attempts = t.attempts + 1"
            f" FROM due WHERE t.id = due.id RETURNING {columns}",
            [*due_parameters, DeliveryStatus.CLAIMED.value, now + lease],
        )
    )
    claimed.sort(key=lambda delivery: delivery.id)
    if claimed and channel == Channel.EMAIL:
        users = _user_model().objects.in_bulk({delivery.recipient_id for delivery in claimed})
        for delivery in claimed:
            if delivery.recipient_id in users:
                delivery.recipient = users[delivery.recipient_id]
    return claimed


def _rows_claim_portable(
    *, channel: str, now: datetime, rows: Q, limit: int | None = None
) -> list[Delivery]:
    """The same lease through the ORM (SQLite, the embedded profile)."""
    lease = timedelta(seconds=settings.NOTIFICATION_CHANNELS_CLAIM_SECONDS)
    with transaction.atomic():
        found = (
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(rows, channel=channel)
            .order_by("id")
            .values_list("id", flat=True)
        )
        ids = list(found if limit is None else found[:limit])
        if not ids:
            return []
        Delivery.objects.filter(id__in=ids).update(
            status=DeliveryStatus.CLAIMED, claimed_until=now + lease, attempts=F("attempts") + 1
        )
    claimed = Delivery.objects.filter(id__in=ids).order_by("id")
    if channel == Channel.EMAIL:  # the address; push reads the recipient's tokens instead
        claimed = claimed.select_related("recipient")
    return list(claimed)


def _user_model() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model()


def retry_delay(*, attempts: int, retry_after: float | None = None) -> float:
    """Seconds until the next attempt, after ``attempts`` attempts failed for now.

    The first retry goes when the provider's ``Retry-After`` says, if it said:
    it knows when it will take the message again, and a longer wait only
    lengthens the delivery. Without one, and from the second retry on (the
    provider's estimate was wrong once already), exponential backoff with full
    jitter, never sooner than ``Retry-After``.
    """
    if attempts <= 1 and retry_after is not None:
        return retry_after
    base = float(settings.NOTIFICATION_CHANNELS_RETRY_BASE_SECONDS)
    cap = float(settings.NOTIFICATION_CHANNELS_RETRY_CAP_SECONDS)
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
    return max(delay, retry_after or 0.0)


@dataclass
class OutcomeRecorder:
    """Writes outcomes as they come: sent rows every ``flush_every`` or ``flush_seconds``.

    A row is marked sent only after its provider accepted it, so a worker killed
    mid-batch leaves the rows it had not recorded claimed until their lease runs
    out; the rows it had recorded are never sent again.
    """

    channel: str
    by_id: dict[int, Delivery]
    flush_every: int = 100
    flush_seconds: float = 0.2
    sent: list[int] = field(default_factory=list)
    pending_outcomes: list[Outcome] = field(default_factory=list)
    # Rows put back for a retry, by the whole second their delay rounds up to, with
    # the longest delay of each: one retry task per group, so a row whose first
    # retry is due in a second does not wait for another row's longer backoff.
    retried: dict[int, list[int]] = field(default_factory=dict)
    retry_delays: dict[int, float] = field(default_factory=dict)
    dead_tokens: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    _last_flush: float = field(default_factory=time.monotonic)

    def report(self, outcome: Outcome) -> None:
        self.counts[outcome.result] = self.counts.get(outcome.result, 0) + 1
        if outcome.result == OutcomeResult.SENT:
            self.sent.append(outcome.delivery_id)
            self.dead_tokens.extend(outcome.dead_tokens)
        else:
            self.pending_outcomes.append(outcome)
        if (
            len(self.sent) + len(self.pending_outcomes) >= self.flush_every
            or time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        now = timezone.now()
        if self.sent:
            _rows_sent(self.sent, now=now)
            self.sent = []
        if self.dead_tokens:
            device_tokens_remove_dead(token_ids=self.dead_tokens)
            self.dead_tokens = []
        if self.pending_outcomes:
            self._record_others(self.pending_outcomes, now=now)
            self.pending_outcomes = []

    def retries_schedule(self) -> None:
        """Queues the retry tasks of the rows put back so far (call after the last flush)."""
        for group, ids in sorted(self.retried.items()):
            deliveries_retry_schedule(
                channel=self.channel, delivery_ids=ids, delay=self.retry_delays[group]
            )
        self.retried, self.retry_delays = {}, {}

    def _record_others(self, outcomes: list[Outcome], *, now: datetime) -> None:
        max_attempts = int(settings.NOTIFICATION_CHANNELS_MAX_ATTEMPTS)
        changes: dict[int, dict[str, Any]] = {}
        dead_tokens: list[int] = []
        for outcome in outcomes:
            delivery = self.by_id[outcome.delivery_id]
            dead_tokens.extend(outcome.dead_tokens)
            sent_to = sorted(set(delivery.sent_to or []) | set(outcome.sent_to))
            if outcome.result == OutcomeResult.SENT:
                change = {"status": DeliveryStatus.SENT, "last_error": "", "finished_at": now}
            elif outcome.result == OutcomeResult.SKIPPED:
                change = {
                    "status": DeliveryStatus.SKIPPED,
                    "last_error": outcome.error,
                    "finished_at": now,
                }
            elif outcome.result == OutcomeResult.TRANSIENT and delivery.attempts < max_attempts:
                delay = retry_delay(attempts=delivery.attempts, retry_after=outcome.retry_after)
                group = math.ceil(delay)
                self.retried.setdefault(group, []).append(delivery.id)
                self.retry_delays[group] = max(self.retry_delays.get(group, 0.0), delay)
                change = {
                    "status": DeliveryStatus.PENDING,
                    "last_error": outcome.error,
                    "next_attempt_at": now + timedelta(seconds=delay),
                    "finished_at": None,
                }
            else:  # permanent, or transient with the attempts spent: a dead letter
                change = {
                    "status": DeliveryStatus.DEAD,
                    "last_error": outcome.error[:2000],
                    "finished_at": now,
                }
            change["sent_to"] = sent_to
            change["claimed_until"] = None
            changes[delivery.id] = change
        _rows_update(changes)
        if dead_tokens:
            device_tokens_remove_dead(token_ids=dead_tokens)


# Joined to the ids ``wanted.id``: each row looked up through the primary key and
# locked, in the order of the ids, if it is still claimed (an outcome changes a row
# only then; ``%s`` is the claimed status). Spelled out for the same reason as the
# claim's lookup (deliveries_claim): the planner, free to choose, walked the whole
# due-row index for ``status = 'claimed'``.
_HELD_BY_ID = (
    "CROSS JOIN LATERAL"
    " (SELECT id FROM {table} WHERE id = wanted.id AND status = %s FOR UPDATE) AS held"
)


def _rows_sent(ids: list[int], *, now: datetime) -> None:
    """Marks claimed rows sent: one UPDATE over the ids."""
    if connection.vendor != "postgresql":
        Delivery.objects.filter(id__in=ids, status=DeliveryStatus.CLAIMED).update(
            status=DeliveryStatus.SENT, finished_at=now, claimed_until=None, last_error=""
        )
        return
    table = Delivery._meta.db_table
    held = _HELD_BY_ID.format(table=table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} t SET status = %s, finished_at = %s,"  # noqa: S608 - the model's table and this module's SQL; values are parameters
            " claimed_until = NULL, last_error = ''"
            f" FROM (SELECT held.id FROM unnest(%s::bigint[]) AS wanted (id) {held}) AS mine"
            " WHERE t.id = mine.id",
            [DeliveryStatus.SENT.value, now, sorted(ids), DeliveryStatus.CLAIMED.value],
        )


def _rows_update(changes: dict[int, dict[str, Any]]) -> None:
    """One UPDATE for rows that each get their own values (a join on VALUES on PostgreSQL)."""
    if not changes:
        return
    if connection.vendor == "postgresql":
        rows = []
        parameters: list[Any] = []
        for delivery_id, change in sorted(changes.items()):  # locked in primary-key order
            rows.append("(%s::bigint, %s, %s, %s::timestamptz, %s::timestamptz, %s::jsonb, %s)")
            parameters += [
                delivery_id,
                str(change["status"]),
                change["last_error"],
                change.get("next_attempt_at"),
                change["finished_at"],
                json.dumps(change["sent_to"]),
                "next_attempt_at" in change,
            ]
        table = Delivery._meta.db_table
        values = (
            f"(VALUES {', '.join(rows)})"
            " AS wanted (id, status, last_error, next_attempt_at, finished_at, sent_to, retry)"
        )
        # The table name is the model's; every value is a parameter.
        sql = (
            f"UPDATE {table} t SET status = v.status, last_error = v.last_error,"  # noqa: S608 - the model's table and this module's SQL; values are parameters
            " next_attempt_at"
            " = CASE WHEN v.retry THEN v.next_attempt_at ELSE t.next_attempt_at END,"
            " finished_at = v.finished_at, sent_to = v.sent_to, claimed_until = NULL"
            f" FROM (SELECT wanted.*, held.id AS held_id FROM {values}"
            f" {_HELD_BY_ID.format(table=table)}) AS v WHERE t.id = v.held_id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*parameters, DeliveryStatus.CLAIMED.value])
        return
    columns = sorted({name for change in changes.values() for name in change})
    fields = {field.name: field for field in Delivery._meta.concrete_fields}
    assignments: dict[str, Any] = {}
    for name in columns:
        whens = [
            When(
                id=delivery_id,
                then=Value(change[name], output_field=fields[name]),
            )
            for delivery_id, change in changes.items()
            if name in change
        ]
        assignments[name] = Case(*whens, default=F(name))
    Delivery.objects.filter(id__in=list(changes), status=DeliveryStatus.CLAIMED).update(
        **assignments
    )


def _chunks_send(
    channel: str, deliveries: list[Delivery], send: Callable[[list[Delivery]], None]
) -> None:
    """Hands ``deliveries`` to ``send`` in chunks, each once the channel's rate limit allows it."""
    size = rate_limits.chunk_size(channel)
    for start in range(0, len(deliveries), size):
        chunk = deliveries[start : start + size]
        rate_limits.acquire(channel=channel, count=len(chunk))
        send(chunk)


def deliveries_send(
    *,
    channel: str,
    delivery_ids: Sequence[int],
    now: datetime | None = None,
    continue_with_due: bool = False,
) -> dict[str, int]:
    """Claims, rate-limits, sends and records one batch; returns the count of each outcome.

    Safe to run twice or concurrently for the same ids: only rows that are due
    and not held are claimed, and only claimed rows are recorded. Push with
    ``continue_with_due`` (the batch task) then goes on with the channel's
    other due rows (:func:`deliveries_claim_due`), see :func:`_push_send`.
    """
    deliveries = deliveries_claim(channel=channel, delivery_ids=delivery_ids, now=now)
    if channel == Channel.PUSH:
        return _push_send(deliveries, continue_with_due=continue_with_due)
    if not deliveries:
        return {}
    recorder = OutcomeRecorder(channel=channel, by_id={d.id: d for d in deliveries})
    try:
        _chunks_send(
            channel, deliveries, lambda chunk: email_adapter.deliveries_send(chunk, recorder.report)
        )
    finally:
        recorder.flush()
    recorder.retries_schedule()
    return recorder.counts


# How long one push batch task goes on with further due rows before it returns.
PUSH_CONTINUE_SECONDS = 30.0


def _push_send(deliveries: list[Delivery], *, continue_with_due: bool) -> dict[str, int]:
    """Sends claimed push rows; with ``continue_with_due``, the channel's due rows after them.

    The requests of a group go on the wire without waiting (the process's
    sender keeps ``CONCURRENCY`` in flight); this thread records the answers,
    and once no more than half a batch is unanswered it claims the next due
    rows and reads their tokens, so the connections do not stand idle while
    the database answers. It stops when nothing is due, or after
    ``PUSH_CONTINUE_SECONDS``.
    """
    channel = Channel.PUSH
    batch = _batch_size(channel)
    recorder = OutcomeRecorder(channel=channel, by_id={})
    session = push_adapter.PushSession()
    deadline = time.monotonic() + PUSH_CONTINUE_SECONDS

    def submit(chunk: list[Delivery]) -> None:
        push_adapter.deliveries_submit(session, chunk, recorder.report)
        session.take(keep=batch // 2)

    try:
        while True:
            if not deliveries and continue_with_due and time.monotonic() < deadline:
                recorder.flush()  # the retried rows are stored before their tasks are queued
                recorder.retries_schedule()
                deliveries = deliveries_claim_due(channel=channel, limit=batch)
            if not deliveries:
                break
            recorder.by_id.update((delivery.id, delivery) for delivery in deliveries)
            _chunks_send(channel, deliveries, submit)
            deliveries = []
        session.take()
    except BaseException:
        session.cancel()  # what is unrecorded stays claimed until its lease runs out
        raise
    finally:
        recorder.flush()
    recorder.retries_schedule()
    return recorder.counts


def deliveries_due_dispatch(*, now: datetime | None = None, limit: int = 20_000) -> int:
    """The sweep: queues rows whose retry is due or whose claim's lease ran out.

    The retry tasks normally do this; the sweep catches rows whose task was
    lost (a broker outage) or whose worker died holding them. It waits a grace
    period past each row's due time so it does not race the retry task.
    """
    now = now or timezone.now()
    grace = timedelta(seconds=settings.NOTIFICATION_CHANNELS_SWEEP_GRACE_SECONDS)
    due = (
        Delivery.objects.filter(_claimable(now - grace))
        .order_by("next_attempt_at")
        .values_list("id", "channel")[:limit]
    )
    by_channel: dict[str, list[int]] = {}
    with planner_methods_off(*_DUE_ROWS_WALKED):
        for delivery_id, channel in due:
            by_channel.setdefault(channel, []).append(delivery_id)
    if not by_channel:
        return 0
    deliveries_dispatch(ids_by_channel=by_channel)
    return sum(len(ids) for ids in by_channel.values())


def deliveries_prune(
    *, now: datetime | None = None, batch_size: int = 10_000, max_batches: int = 100
) -> int:
    """Deletes sent and skipped deliveries older than the retention; returns how many.

    Dead letters stay until staff replay them. Batches of ``batch_size`` rows,
    each its own statement, at most ``max_batches`` a run; running twice
    deletes nothing more.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.NOTIFICATION_CHANNELS_RETENTION_DAYS)
    finished = [DeliveryStatus.SENT, DeliveryStatus.SKIPPED]
    deleted = 0
    for _ in range(max_batches):
        # Oldest first along the primary key: old rows have the lowest ids, so
        # the walk stops after a batch instead of scanning the table.
        ids = list(
            Delivery.objects.filter(status__in=finished, finished_at__lt=cutoff)
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            break
        deleted += Delivery.objects.filter(id__in=ids).delete()[0]
    return deleted


# -- dead letters ------------------------------------------------------------------------


def dead_letters_replay(
    *,
    delivery_ids: Iterable[int] | None = None,
    channel: str | None = None,
    error_contains: str | None = None,
) -> int:
    """Puts dead letters back to pending (attempts reset) and queues them; returns how many.

    Idempotent: only rows still ``dead`` are moved, in one conditional UPDATE,
    so a second replay of the same rows finds nothing and sends nothing.
    """
    rows = Delivery.objects.filter(status=DeliveryStatus.DEAD)
    if delivery_ids is not None:
        rows = rows.filter(id__in=list(delivery_ids))
    if channel:
        rows = rows.filter(channel=channel)
    if error_contains:
        rows = rows.filter(last_error__icontains=error_contains)
    now = timezone.now()
    by_channel: dict[str, list[int]] = {}
    with transaction.atomic():
        ids = list(rows.select_for_update(skip_locked=True).values_list("id", "channel"))
        for delivery_id, found_channel in ids:
            by_channel.setdefault(found_channel, []).append(delivery_id)
        if ids:
            Delivery.objects.filter(
                id__in=[delivery_id for delivery_id, _ in ids], status=DeliveryStatus.DEAD
            ).update(
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                finished_at=None,
                claimed_until=None,
            )
            transaction.on_commit(lambda: deliveries_dispatch(ids_by_channel=by_channel))
    return len(ids)


def dead_letter_replay(*, delivery_id: int) -> bool:
    """Replays one dead letter; False when it is no longer dead (already replayed)."""
    if not Delivery.objects.filter(id=delivery_id).exists():
        raise NotFound("No such delivery.")
    return dead_letters_replay(delivery_ids=[delivery_id]) == 1


# -- device tokens ------------------------------------------------------------------------

MAX_TOKEN_LENGTH = 512


def device_token_validate(*, token: str, platform: str) -> None:
    problems: dict[str, str] = {}
    if platform not in DevicePlatform.values:
        problems["platform"] = f"must be one of {', '.join(DevicePlatform.values)}"
    if not isinstance(token, str) or not (20 <= len(token) <= MAX_TOKEN_LENGTH):
        problems["token"] = "must be 20 to 512 characters"  # noqa: S105 - a field name
    elif not all(c.isascii() and (c.isalnum() or c in "-_:.") for c in token):
        problems["token"] = "may contain only letters, digits and - _ : ."  # noqa: S105 - a message
    if problems:
        raise InvalidInput("The device token is invalid.", details=problems)


def device_token_register(*, user_id: int, token: str, platform: str) -> DeviceToken:
    """Registers (or moves to this user, or refreshes) a device token.

    A token identifies one app install: if another account used the device
    before, the token now belongs to this user only.
    """
    device_token_validate(token=token, platform=platform)
    row, _ = DeviceToken.objects.update_or_create(
        token=token, defaults={"user_id": user_id, "platform": platform}
    )
    return row


def device_token_unregister(*, user_id: int, token: str) -> bool:
    deleted, _ = DeviceToken.objects.filter(user_id=user_id, token=token).delete()
    return deleted > 0


def device_tokens_remove_dead(*, token_ids: Iterable[int]) -> int:
    """Removes tokens the provider reported unregistered."""
    deleted, _ = DeviceToken.objects.filter(id__in=list(set(token_ids))).delete()
    if deleted:
        logger.info("removed %d unregistered device tokens", deleted)
    return deleted
