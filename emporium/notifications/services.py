"""Who gets what on which channel, and the inbox's writes.

:func:`notifications_send` is the one way a notification is sent: for each
recipient and channel it reads the user's preferences (critical kinds ignore
opt-outs), then decides "now" or "held" once, recorded as a ``Dispatch`` row
unique on (recipient, channel, dedup key):

* held for the digest when the user already had ``THROTTLE_MAX`` non-critical
  messages on that channel in the current throttle window;
* held until the end of the user's quiet hours, for a non-critical push;
* otherwise sent now: an inbox row (pushed on /ws/notifications/ after
  commit), or an e-mail/push delivery handed to the channels app, which sends
  it after commit with its own retries, rate limits and dead letters.

A message sent twice (a re-delivered event, a retried task) finds its
``Dispatch`` row and does nothing. :func:`digests_release` folds what was held
into one digest per user and channel once its time has come.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from emporium.accounts.models import User
from emporium.core.errors import InvalidInput, NotFound
from emporium.notifications.channels.services import (
    DeliveryRequest,
    channel_deliveries_enqueue,
)
from emporium.notifications.models import (
    CRITICAL_KINDS,
    KIND_CHANNELS,
    PREFERENCE_KINDS,
    Dispatch,
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationPreference,
    NotificationSettings,
)
from emporium.realtime import groups
from emporium.realtime.services import publish_after_commit

CHANNELS = tuple(NotificationChannel.values)
DIGEST_ITEMS_SHOWN = 20


@dataclass(frozen=True)
class Message:
    """One notification for one recipient, on whichever channels their preferences allow."""

    recipient_id: int
    kind: str
    title: str
    body: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    # Unique per recipient: "event:<outbox event id>" for a trigger.
    dedup_key: str = ""


# -- shapes -----------------------------------------------------------------------------


def notification_event(notification: Notification) -> dict[str, Any]:
    """A notification as the socket pushes it and the REST list returns it."""
    return {
        "id": notification.pk,
        "type": "notification",
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "data": notification.data,
        "read_at": notification.read_at.isoformat() if notification.read_at else None,
        "created_at": notification.created_at.isoformat(),
    }


def notification_publish_after_commit(notification: Notification) -> None:
    publish_after_commit(
        groups.user_notifications(notification.recipient_id), notification_event(notification)
    )


# -- preferences ------------------------------------------------------------------------


@dataclass(frozen=True)
class Preferences:
    """What one user chose: opt-outs (kind, channel) and quiet hours in their time zone."""

    disabled: frozenset[tuple[str, str]] = frozenset()
    time_zone: str = "UTC"
    quiet_start: dt.time | None = None
    quiet_end: dt.time | None = None

    def allows(self, kind: str, channel: str) -> bool:
        return kind in CRITICAL_KINDS or (kind, channel) not in self.disabled

    def quiet_until(self, now: dt.datetime) -> dt.datetime | None:
        """The end of the quiet hours ``now`` falls in (UTC), or None outside them."""
        if self.quiet_start is None or self.quiet_end is None:
            return None
        local = now.astimezone(zoneinfo.ZoneInfo(self.time_zone))
        start, end, moment = self.quiet_start, self.quiet_end, local.time()
        if start == end:
            return None
        inside = start <= moment < end if start < end else moment >= start or moment < end
        if not inside:
            return None
        end_day = local.date()
        if start > end and moment >= start:
            end_day += dt.timedelta(days=1)
        local_end = dt.datetime.combine(end_day, end, tzinfo=local.tzinfo)
        return local_end.astimezone(dt.UTC)


def preferences_for(*, user_ids: Iterable[int]) -> dict[int, Preferences]:
    """Every listed user's preferences in two queries (users without rows get the defaults)."""
    ids = list(set(user_ids))
    disabled: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for user_id, kind, channel in NotificationPreference.objects.filter(
        user_id__in=ids, enabled=False
    ).values_list("user_id", "kind", "channel"):
        disabled[user_id].add((kind, channel))
    zones = {row.user_id: row for row in NotificationSettings.objects.filter(user_id__in=ids)}
    result = {}
    for user_id in ids:
        row = zones.get(user_id)
        result[user_id] = Preferences(
            disabled=frozenset(disabled.get(user_id, ())),
            time_zone=row.time_zone if row else "UTC",
            quiet_start=row.quiet_hours_start if row else None,
            quiet_end=row.quiet_hours_end if row else None,
        )
    return result


class UnknownPreference(InvalidInput):
    code = "unknown_notification_preference"
    default_message = "Unknown notification kind or channel."


def preferences_update(
    *,
    user: User,
    channels: dict[str, dict[str, bool]] | None = None,
    time_zone: str | None = None,
    quiet_hours: tuple[dt.time, dt.time] | None = None,
    clear_quiet_hours: bool = False,
) -> None:
    """Stores the user's choices; an unknown kind or channel refuses the whole update.

    Everything is checked before anything is written, and the writes are one transaction.
    """
    unknown = {}
    for kind, per_channel in (channels or {}).items():
        if kind not in PREFERENCE_KINDS:
            unknown[kind] = "unknown kind"
            continue
        for channel in per_channel:
            if channel not in CHANNELS:
                unknown[f"{kind}.{channel}"] = "unknown channel"
            elif channel not in KIND_CHANNELS[kind]:
                unknown[f"{kind}.{channel}"] = "not offered for this kind"
    if unknown:
        raise UnknownPreference(
            details={"unknown": unknown, "kinds": list(PREFERENCE_KINDS), "channels": CHANNELS}
        )
    if time_zone is not None:
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
            raise InvalidInput(
                "Unknown time zone.", details={"time_zone": time_zone}, code="unknown_time_zone"
            ) from error
    with transaction.atomic():
        for kind, per_channel in (channels or {}).items():
            for channel, enabled in per_channel.items():
                NotificationPreference.objects.update_or_create(
                    user=user, kind=kind, channel=channel, defaults={"enabled": enabled}
                )
        if time_zone is not None or quiet_hours is not None or clear_quiet_hours:
            row, _ = NotificationSettings.objects.get_or_create(user=user)
            if time_zone is not None:
                row.time_zone = time_zone
            if quiet_hours is not None:
                row.quiet_hours_start, row.quiet_hours_end = quiet_hours
            elif clear_quiet_hours:
                row.quiet_hours_start = row.quiet_hours_end = None
            row.save()


# -- sending ------------------------------------------------------------------------------


def _window_start(now: dt.datetime) -> dt.datetime:
    window = int(settings.EMPORIUM_NOTIFICATIONS_THROTTLE_WINDOW_SECONDS)
    seconds = int(now.timestamp()) // window * window
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def _sent_in_window(*, recipient_id: int, channel: str, since: dt.datetime, limit: int) -> int:
    """Non-critical messages sent now (not held) in the window; counts at most ``limit``."""
    rows = Dispatch.objects.filter(
        recipient_id=recipient_id,
        channel=channel,
        created_at__gte=since,
        held=False,
        critical=False,
    ).values_list("pk", flat=True)[:limit]
    return len(rows)


def _decide(
    *, message: Message, channel: str, preferences: Preferences, now: dt.datetime
) -> tuple[bool, dt.datetime | None]:
    """(held, release_after) for one message on one channel."""
    if message.kind in CRITICAL_KINDS:
        return False, None
    limit = int(settings.EMPORIUM_NOTIFICATIONS_THROTTLE_MAX)
    window_start = _window_start(now)
    release = None
    sent = _sent_in_window(
        recipient_id=message.recipient_id, channel=channel, since=window_start, limit=limit
    )
    if sent >= limit:
        window = int(settings.EMPORIUM_NOTIFICATIONS_THROTTLE_WINDOW_SECONDS)
        release = window_start + dt.timedelta(seconds=window)
    if channel == NotificationChannel.PUSH:
        quiet_end = preferences.quiet_until(now)
        if quiet_end is not None:
            release = max(release, quiet_end) if release else quiet_end
    return release is not None, release


def _claim(
    *,
    message: Message,
    channel: str,
    held: bool,
    release_after: dt.datetime | None,
    now: dt.datetime,
) -> bool:
    """Records the decision; False when this message was already decided for this channel."""
    try:
        with transaction.atomic():
            Dispatch.objects.create(
                recipient_id=message.recipient_id,
                channel=channel,
                dedup_key=message.dedup_key,
                kind=message.kind,
                critical=message.kind in CRITICAL_KINDS,
                held=held,
                title=message.title if held else "",
                body=message.body if held else "",
                data=message.data if held else {},
                release_after=release_after,
                created_at=now,
            )
    except IntegrityError:
        return False
    return True


def inbox_add(*, message: Message) -> Notification | None:
    """One inbox row, pushed after commit; None when the recipient already has it."""
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                recipient_id=message.recipient_id,
                kind=message.kind,
                title=message.title[:200],
                body=message.body,
                data=message.data,
                dedup_key=message.dedup_key,
            )
    except IntegrityError:
        return None
    notification_publish_after_commit(notification)
    return notification


def _delivery_request(message: Message, channel: str) -> DeliveryRequest:
    return DeliveryRequest(
        recipient_id=message.recipient_id,
        kind=message.kind,
        channel=channel,
        title=message.title,
        body=message.body,
        data=message.data,
        # The channels app deduplicates on (channel, key); ours are unique per recipient.
        dedup_key=f"{message.recipient_id}:{message.dedup_key}",
        critical=message.kind in CRITICAL_KINDS,
    )


@dataclass
class SendOutcome:
    in_app: int = 0
    external: int = 0
    held: int = 0
    skipped: int = 0


def notifications_send(
    *, messages: Sequence[Message], now: dt.datetime | None = None
) -> SendOutcome:
    """Sends each message on every channel its recipient allows; idempotent per dedup key.

    One transaction: the decisions, the inbox rows and the channel deliveries
    commit together, and the pushes and sends follow the commit.
    """
    now = now or timezone.now()
    outcome = SendOutcome()
    if not messages:
        return outcome
    preferences = preferences_for(user_ids=[message.recipient_id for message in messages])
    external: list[DeliveryRequest] = []
    with transaction.atomic():
        for message in messages:
            if not message.dedup_key:
                raise ValueError("a notification needs a dedup key")
            user_preferences = preferences[message.recipient_id]
            for channel in KIND_CHANNELS.get(message.kind, CHANNELS):
                if not user_preferences.allows(message.kind, channel):
                    outcome.skipped += 1
                    continue
                held, release_after = _decide(
                    message=message, channel=channel, preferences=user_preferences, now=now
                )
                if not _claim(
                    message=message,
                    channel=channel,
                    held=held,
                    release_after=release_after,
                    now=now,
                ):
                    continue  # decided before: a re-delivery
                if held:
                    outcome.held += 1
                elif channel == NotificationChannel.IN_APP:
                    outcome.in_app += inbox_add(message=message) is not None
                else:
                    external.append(_delivery_request(message, channel))
        if external:
            outcome.external = channel_deliveries_enqueue(requests=external)
    return outcome


def _digest_message(recipient_id: int, channel: str, held: list[Dispatch]) -> Message:
    if len(held) == 1:
        only = held[0]
        return Message(
            recipient_id=recipient_id,
            kind=only.kind,
            title=only.title,
            body=only.body,
            data=only.data,
            dedup_key=only.dedup_key,
        )
    items = [{"kind": row.kind, "title": row.title, "data": row.data} for row in held]
    lines = "\n".join(f"- {row.title}" for row in held[:DIGEST_ITEMS_SHOWN])
    more = len(held) - DIGEST_ITEMS_SHOWN
    if more > 0:
        lines += f"\n… and {more} more"
    return Message(
        recipient_id=recipient_id,
        kind=NotificationKind.DIGEST,
        title=f"{len(held)} updates while you were away",
        body=lines,
        data={"count": len(held), "items": items[:DIGEST_ITEMS_SHOWN]},
        dedup_key=f"digest:{channel}:{held[0].pk}",
    )


def digests_release(*, now: dt.datetime | None = None, limit: int = 5_000) -> int:
    """Sends what was held and is due, one digest per user and channel; returns how many.

    The held rows are locked (SKIP LOCKED) and stamped in the same transaction
    as the digest, so two runs at once release each row once; a digest's dedup
    key is its first held row's, so a retried run never sends it twice.
    """
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Dispatch.objects.filter(held=True, released_at__isnull=True, release_after__lte=now)
            .order_by("pk")
            .select_for_update(skip_locked=True)[:limit]
        )
        if not due:
            return 0
        grouped: dict[tuple[int, str], list[Dispatch]] = defaultdict(list)
        for row in due:
            grouped[(row.recipient_id, row.channel)].append(row)
        external: list[DeliveryRequest] = []
        for (recipient_id, channel), rows in grouped.items():
            message = _digest_message(recipient_id, channel, rows)
            if channel == NotificationChannel.IN_APP:
                inbox_add(message=message)
            else:
                external.append(_delivery_request(message, channel))
        if external:
            channel_deliveries_enqueue(requests=external)
        Dispatch.objects.filter(pk__in=[row.pk for row in due]).update(released_at=now)
    return len(grouped)


def dispatches_prune(*, older_than: dt.timedelta) -> int:
    """Drops decisions past any throttle window that are not waiting for a digest."""
    cutoff = timezone.now() - older_than
    deleted, _ = (
        Dispatch.objects.filter(created_at__lt=cutoff)
        .exclude(held=True, released_at__isnull=True)
        .delete()
    )
    return deleted


# -- reading state ------------------------------------------------------------------------


def notification_mark_read(*, user: User, notification_id: int) -> Notification:
    """Marks one of the user's notifications read (again: no change); another's is NotFound."""
    now = timezone.now()
    Notification.objects.filter(pk=notification_id, recipient=user, read_at__isnull=True).update(
        read_at=now
    )
    notification = Notification.objects.filter(pk=notification_id, recipient=user).first()
    if notification is None:
        raise NotFound("No such notification.")
    return notification


def notifications_mark_all_read(*, user: User, up_to_id: int | None = None) -> int:
    """Marks every unread notification of the user (up to ``up_to_id``) read; returns how many.

    One UPDATE over the unread index's range for the user.
    """
    unread = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if up_to_id is not None:
        unread = unread.filter(pk__lte=up_to_id)
    return unread.update(read_at=timezone.now())


def notifications_prune_read(*, older_than: dt.timedelta, batch: int = 10_000) -> int:
    """Deletes read notifications older than ``older_than`` in batches; returns how many.

    Ids grow with time, so the rows old enough are those below the first id
    created after the cutoff: that boundary is found on the primary key, and
    the prune walks the key range below it in batches, each its own short
    transaction. Unread rows are kept whatever their age.
    """
    cutoff = timezone.now() - older_than
    boundary = (
        Notification.objects.filter(created_at__gte=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    old = Notification.objects.filter(read_at__isnull=False)
    old = old.filter(pk__lt=boundary) if boundary is not None else old.filter(created_at__lt=cutoff)
    total, after = 0, 0
    while True:
        ids = list(old.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return total
        deleted, _ = Notification.objects.filter(pk__in=ids).delete()
        total += deleted
        after = ids[-1]
