"""Staff broadcasts: one message to an audience of up to millions, in batches.

:func:`broadcast_create` checks everything (title, body size, channels, that
the audience names something that exists and is not empty), then in one
transaction stores the broadcast and its batches: consecutive ranges of
audience user ids, ``EMPORIUM_NOTIFICATIONS_BROADCAST_BATCH`` users each,
found by one window query. After commit one task per batch goes to RabbitMQ
(queue ``notifications``).

A batch (:func:`broadcast_batch_run`) is one transaction: it locks its
``BroadcastBatch`` row, returns at once if the batch is done or the broadcast
cancelled, writes every inbox row of its range with one ``INSERT … SELECT …
ON CONFLICT (recipient_id, dedup_key) DO NOTHING`` (the dedup key is
``broadcast:<id>``), queues the e-mail/push deliveries, stamps the batch done
and adds to the broadcast's progress. A worker killed mid-batch rolls all of
that back and the redelivered message does it once; a batch delivered twice
finds itself done. After commit the rows go to the recipients with an open
/ws/notifications/ socket, and the progress to /ws/dashboard/.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

import emporium.realtime
from emporium.accounts.models import User
from emporium.catalog.models import Category, Product
from emporium.core.errors import Conflict, InvalidInput
from emporium.notifications.channels.services import (
    DeliveryRequest,
    channel_deliveries_enqueue,
)
from emporium.notifications.models import (
    AudienceType,
    Broadcast,
    BroadcastBatch,
    BroadcastStatus,
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationPreference,
)
from emporium.notifications.services import CHANNELS
from emporium.orders.models import Order
from emporium.realtime import groups
from emporium.realtime.transport import dumps, publish_text
from emporium.wishlists.models import Wishlist, WishlistItem

logger = logging.getLogger(__name__)

BATCH_TASK = "notifications.broadcast_batch"
MAX_TITLE_LENGTH = 200
MAX_DAYS = 3650


class EmptyAudience(InvalidInput):
    code = "empty_audience"
    default_message = "The audience has no users."


class BroadcastFinished(Conflict):
    code = "broadcast_finished"
    default_message = "The broadcast has already finished."


@dataclass(frozen=True)
class Audience:
    type: str
    value: int | None = None


def _table(model: Any) -> str:
    """A model's quoted table name: the only text put into SQL here; values are parameters."""
    return connection.ops.quote_name(model._meta.db_table)


def _audience_sql(audience: Audience, *, now: dt.datetime) -> tuple[str, list[Any]]:
    """A condition on ``u`` (the users table) selecting the audience, and its parameters."""
    if audience.type == AudienceType.ALL:
        return "TRUE", []
    wishlist = f"""EXISTS (SELECT 1 FROM {_table(Wishlist)} w
        JOIN {_table(WishlistItem)} wi ON wi.wishlist_id = w.id
        {{join}} WHERE w.user_id = u.id AND {{condition}})"""  # noqa: S608 - see _table
    if audience.type == AudienceType.WISHLIST_PRODUCT:
        return wishlist.format(join="", condition="wi.product_id = %s"), [audience.value]
    if audience.type == AudienceType.WISHLIST_CATEGORY:
        # The category and everything under it: their paths start with its path.
        category_path = Category.objects.values_list("path", flat=True).get(pk=audience.value or 0)
        return (
            wishlist.format(
                join=f"JOIN {_table(Product)} p ON p.id = wi.product_id "
                f"JOIN {_table(Category)} c ON c.id = p.category_id",
                condition="c.path LIKE %s",
            ),
            [category_path + "%"],
        )
    if audience.type == AudienceType.RECENT_BUYERS:
        since = now - dt.timedelta(days=audience.value or 0)
        return (
            f"EXISTS (SELECT 1 FROM {_table(Order)} o WHERE o.user_id = u.id "  # noqa: S608 - model tables; values are parameters
            "AND o.created_at >= %s)",
            [since],
        )
    raise InvalidInput("Unknown audience.", code="unknown_audience")


def _recipients_sql(audience: Audience, *, channel: str, now: dt.datetime) -> tuple[str, list[Any]]:
    """FROM/WHERE of the active users in the audience who did not opt out on ``channel``."""
    condition, params = _audience_sql(audience, now=now)
    return (
        f"""FROM {_table(User)} u
        WHERE u.is_active AND {condition}
          AND NOT EXISTS (SELECT 1 FROM {_table(NotificationPreference)} np
              WHERE np.user_id = u.id AND np.kind = %s AND np.channel = %s AND NOT np.enabled)""",  # noqa: S608 - model tables; values are parameters
        [*params, NotificationKind.BROADCAST, channel],
    )


def _validate(*, title: str, body: str, channels: list[str], audience: Audience) -> None:
    problems: dict[str, str] = {}
    if not title.strip() or len(title) > MAX_TITLE_LENGTH:
        problems["title"] = f"1 to {MAX_TITLE_LENGTH} characters"
    body_max = int(settings.EMPORIUM_NOTIFICATIONS_BODY_MAX)
    if not body.strip() or len(body) > body_max:
        problems["body"] = f"1 to {body_max} characters"
    if not channels or len(set(channels)) != len(channels):
        problems["channels"] = f"a non-empty list without repeats of {', '.join(CHANNELS)}"
    elif unknown := [channel for channel in channels if channel not in CHANNELS]:
        problems["channels"] = f"unknown: {', '.join(map(str, unknown))}"
    if audience.type not in AudienceType.values:
        problems["audience.type"] = f"one of {', '.join(AudienceType.values)}"
    elif audience.type == AudienceType.ALL:
        if audience.value is not None:
            problems["audience.value"] = "not taken by this audience"
    elif audience.value is None or audience.value < 1:
        problems["audience.value"] = "a positive whole number"
    elif audience.type == AudienceType.WISHLIST_PRODUCT:
        if not Product.objects.filter(pk=audience.value).exists():
            problems["audience.value"] = "no such product"
    elif audience.type == AudienceType.WISHLIST_CATEGORY:
        if not Category.objects.filter(pk=audience.value).exists():
            problems["audience.value"] = "no such category"
    elif audience.type == AudienceType.RECENT_BUYERS and audience.value > MAX_DAYS:
        problems["audience.value"] = f"1 to {MAX_DAYS} days"
    if problems:
        raise InvalidInput("The broadcast is not valid.", details=problems)


def _plan(audience: Audience, *, now: dt.datetime) -> list[tuple[int, int, int]]:
    """(first user id, last user id, users) of each batch of the audience, in id order.

    The audience's active users, whatever their preferences: each channel's
    writes leave out those who opted out of broadcasts on it.
    """
    size = int(settings.EMPORIUM_NOTIFICATIONS_BROADCAST_BATCH)
    condition, params = _audience_sql(audience, now=now)
    sql = f"""
        SELECT MIN(id), MAX(id), COUNT(*) FROM (
            SELECT u.id, (ROW_NUMBER() OVER (ORDER BY u.id) - 1) / %s AS batch
            FROM {_table(User)} u WHERE u.is_active AND {condition}
        ) numbered GROUP BY batch ORDER BY batch"""  # noqa: S608 - see _table
    with connection.cursor() as cursor:
        cursor.execute(sql, [size, *params])
        return [(int(first), int(last), int(count)) for first, last, count in cursor.fetchall()]


def broadcast_create(
    *, created_by: User, title: str, body: str, channels: list[str], audience: Audience
) -> Broadcast:
    """Validates and stores a broadcast with its batches; the batches are queued after commit.

    Nothing is written when anything is wrong, the audience being empty included.
    """
    _validate(title=title, body=body, channels=channels, audience=audience)
    now = timezone.now()
    with transaction.atomic():
        plan = _plan(audience, now=now)
        if not plan:
            raise EmptyAudience(
                details={"audience": {"type": audience.type, "value": audience.value}}
            )
        broadcast = Broadcast.objects.create(
            created_by=created_by,
            title=title,
            body=body,
            channels=channels,
            audience_type=audience.type,
            audience_value=audience.value,
            status=BroadcastStatus.RUNNING,
            batches_total=len(plan),
            recipients_planned=sum(count for _, _, count in plan),
            started_at=now,
        )
        BroadcastBatch.objects.bulk_create(
            BroadcastBatch(
                broadcast=broadcast, number=number, first_user_id=first, last_user_id=last
            )
            for number, (first, last, _) in enumerate(plan)
        )
        broadcast_id = broadcast.pk
        transaction.on_commit(lambda: broadcast_batches_queue(broadcast_id=broadcast_id))
    return broadcast


def broadcast_batches_queue(*, broadcast_id: int) -> int:
    """Queues a task for every batch not done yet; returns how many were queued.

    Safe to repeat (each batch runs once whatever the number of its messages):
    the sweeper calls it again for a broadcast that stopped moving, say because
    RabbitMQ refused the messages when the broadcast was created.
    """
    numbers = list(
        BroadcastBatch.objects.filter(broadcast_id=broadcast_id, done_at__isnull=True)
        .order_by("number")
        .values_list("number", flat=True)
    )
    queued = 0
    try:
        for number in numbers:
            # By name: this layer does not import the tasks module that calls it.
            current_app.tasks[BATCH_TASK].apply_async(args=(broadcast_id, number))
            queued += 1
    except Exception:
        # The broker is unreachable: the sweeper queues the rest once it is back.
        logger.exception(
            "broadcast %s: %s of %s batches queued", broadcast_id, queued, len(numbers)
        )
    return queued


def _insert_inbox_rows(
    broadcast: Broadcast, batch: BroadcastBatch, *, now: dt.datetime
) -> list[tuple[int, int]]:
    """One INSERT … SELECT for the batch's range; (notification id, recipient id) of new rows."""
    audience = Audience(broadcast.audience_type, broadcast.audience_value)
    recipients, params = _recipients_sql(
        audience, channel=NotificationChannel.IN_APP, now=broadcast.created_at
    )
    data = dumps({"broadcast_id": broadcast.pk})
    data_param = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    sql = f"""
        INSERT INTO {_table(Notification)}
            (recipient_id, kind, title, body, data, dedup_key, created_at)
        SELECT u.id, %s, %s, %s, {data_param}, %s, %s {recipients}
          AND u.id BETWEEN %s AND %s
        ORDER BY u.id
        ON CONFLICT (recipient_id, dedup_key) DO NOTHING
        RETURNING id, recipient_id"""
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                NotificationKind.BROADCAST,
                broadcast.title,
                broadcast.body,
                data,
                f"broadcast:{broadcast.pk}",
                now,
                *params,
                batch.first_user_id,
                batch.last_user_id,
            ],
        )
        return [(int(row[0]), int(row[1])) for row in cursor.fetchall()]


def _queue_external(broadcast: Broadcast, batch: BroadcastBatch, channel: str) -> int:
    audience = Audience(broadcast.audience_type, broadcast.audience_value)
    recipients, params = _recipients_sql(audience, channel=channel, now=broadcast.created_at)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT u.id {recipients} AND u.id BETWEEN %s AND %s ORDER BY u.id",
            [*params, batch.first_user_id, batch.last_user_id],
        )
        user_ids = [int(row[0]) for row in cursor.fetchall()]
    return channel_deliveries_enqueue(
        requests=[
            DeliveryRequest(
                recipient_id=user_id,
                kind=NotificationKind.BROADCAST,
                channel=channel,
                title=broadcast.title,
                body=broadcast.body,
                data={"broadcast_id": broadcast.pk},
                dedup_key=f"{user_id}:broadcast:{broadcast.pk}",
                critical=False,
            )
            for user_id in user_ids
        ]
    )


def broadcast_progress(broadcast: Broadcast) -> dict[str, Any]:
    return {
        "id": broadcast.pk,
        "title": broadcast.title,
        "channels": broadcast.channels,
        "audience": {"type": broadcast.audience_type, "value": broadcast.audience_value},
        "status": broadcast.status,
        "batches_total": broadcast.batches_total,
        "batches_done": broadcast.batches_done,
        "recipients_planned": broadcast.recipients_planned,
        "recipients_done": broadcast.recipients_done,
        "created_at": broadcast.created_at.isoformat(),
        "started_at": broadcast.started_at.isoformat() if broadcast.started_at else None,
        "finished_at": broadcast.finished_at.isoformat() if broadcast.finished_at else None,
    }


def _push_after_commit(broadcast: Broadcast, rows: list[tuple[int, int]], now: dt.datetime) -> None:
    """After commit: each new row to its recipient if they are connected; progress to dashboards."""
    progress = broadcast_progress(broadcast)
    shape = {
        "type": "notification",
        "kind": NotificationKind.BROADCAST,
        "title": broadcast.title,
        "body": broadcast.body,
        "data": {"broadcast_id": broadcast.pk},
        "read_at": None,
        "created_at": now.isoformat(),
    }

    def push() -> None:
        try:
            by_group = {groups.user_notifications(user_id): pk for pk, user_id in rows}
            for group in emporium.realtime.groups_listened(list(by_group)):
                publish_text(group, dumps({"id": by_group[group], **shape}))
            publish_text(
                groups.DASHBOARD, dumps({"type": "notification_broadcast", "broadcast": progress})
            )
        except Exception:  # pushes are best effort; the inbox has every row
            logger.exception("could not push broadcast %s", broadcast.pk)

    transaction.on_commit(push)


def broadcast_batch_run(*, broadcast_id: int, number: int) -> int:
    """Runs one batch once; returns how many inbox rows (or deliveries) it added.

    Running it again, or after the broadcast was cancelled, changes nothing.
    """
    now = timezone.now()
    with transaction.atomic():
        batch = (
            BroadcastBatch.objects.select_for_update()
            .filter(broadcast_id=broadcast_id, number=number)
            .first()
        )
        if batch is None or batch.done_at is not None:
            return 0
        broadcast = Broadcast.objects.get(pk=broadcast_id)
        if broadcast.status != BroadcastStatus.RUNNING:
            return 0
        rows: list[tuple[int, int]] = []
        added = 0
        for channel in broadcast.channels:
            if channel == NotificationChannel.IN_APP:
                rows = _insert_inbox_rows(broadcast, batch, now=now)
                added += len(rows)
            else:
                queued = _queue_external(broadcast, batch, channel)
                if NotificationChannel.IN_APP not in broadcast.channels:
                    added += queued
        batch.done_at = now
        batch.recipients = added
        batch.save(update_fields=["done_at", "recipients"])
        Broadcast.objects.filter(pk=broadcast_id).update(
            batches_done=F("batches_done") + 1, recipients_done=F("recipients_done") + added
        )
        Broadcast.objects.filter(
            pk=broadcast_id, status=BroadcastStatus.RUNNING, batches_done=F("batches_total")
        ).update(status=BroadcastStatus.COMPLETED, finished_at=now)
        broadcast.refresh_from_db()
        _push_after_commit(broadcast, rows, now)
    return added


def broadcast_cancel(*, broadcast_id: int) -> Broadcast:
    """Stops a running broadcast: batches not started yet do nothing when their turn comes."""
    with transaction.atomic():
        broadcast = Broadcast.objects.select_for_update().get(pk=broadcast_id)
        if broadcast.status != BroadcastStatus.RUNNING:
            raise BroadcastFinished(details={"status": broadcast.status})
        broadcast.status = BroadcastStatus.CANCELLED
        broadcast.finished_at = timezone.now()
        broadcast.save(update_fields=["status", "finished_at"])
        progress = broadcast_progress(broadcast)
        transaction.on_commit(
            lambda: emporium.realtime.broadcast(
                groups.DASHBOARD, {"type": "notification_broadcast", "broadcast": progress}
            )
        )
    return broadcast


def broadcasts_stalled(*, idle_for: dt.timedelta) -> list[int]:
    """Running broadcasts with batches left and no batch done for ``idle_for``."""
    cutoff = timezone.now() - idle_for
    stalled = []
    for broadcast_id in Broadcast.objects.filter(
        status=BroadcastStatus.RUNNING, started_at__lt=cutoff
    ).values_list("pk", flat=True):
        newest = (
            BroadcastBatch.objects.filter(broadcast_id=broadcast_id, done_at__isnull=False)
            .order_by("-done_at")
            .values_list("done_at", flat=True)
            .first()
        )
        if newest is None or newest < cutoff:
            stalled.append(broadcast_id)
    return stalled
