"""Webhook subscriptions, and sending their deliveries.

A delivery goes through: created pending when its event is relayed
(:func:`deliveries_create_for_event`, one INSERT for every matching
subscription); claimed by one sender with a lease (:func:`delivery_attempt`,
a conditional UPDATE that also checks it is the first pending delivery of its
aggregate for its subscription); sent outside any transaction; and its outcome
recorded in one transaction: delivered (2xx), retried later with exponential
backoff and jitter (timeout, connection error, 408, 429 with its Retry-After,
5xx), or failed for good (any other answer, or ``WEBHOOKS_MAX_ATTEMPTS``
reached). An open circuit puts the delivery back without counting an attempt.
A subscription whose endpoint keeps failing for ``WEBHOOKS_DISABLE_AFTER_SECONDS``
is disabled and staff are told; its pending deliveries wait, and go out in
order once it is enabled again.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pybreaker
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from emporium.core import correlation
from emporium.core.db.connection import planner_methods_off
from emporium.core.errors import Conflict, InvalidInput
from emporium.integrations import events
from emporium.integrations.models import OutboxEvent
from emporium.integrations.webhooks.addresses import TargetRefused, target_check
from emporium.integrations.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from emporium.integrations.webhooks.sender import (
    EndpointUnavailable,
    delivery_client,
    endpoint_breaker,
    request_timeout,
)
from emporium.integrations.webhooks.signing import SIGNATURE_HEADER, signature_header

logger = logging.getLogger(__name__)

# The domain events a subscription may ask for. The outbox carries other,
# internal ones too (payment.requested...): commands between apps, not news.
WEBHOOK_EVENT_TYPES: tuple[str, ...] = (
    events.ORDER_PLACED,
    events.ORDER_PAID,
    events.ORDER_SHIPPED,
    events.ORDER_DELIVERED,
    events.ORDER_CANCELLED,
    events.PAYMENT_FAILED,
    events.STOCK_LOW,
)
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
RESPONSE_BODY_LIMIT = 1024  # characters of an answer kept in the log
RESPONSE_READ_LIMIT = 64 * 1024  # bytes read from an answer at most
MAX_EVENT_TYPES = 50


class WebhookInvalid(InvalidInput):
    code = "webhook_invalid"


class WebhookTargetRefused(InvalidInput):
    code = "webhook_target_refused"
    default_message = "This URL may not receive webhooks."


class UnknownEventType(InvalidInput):
    code = "unknown_event_type"
    default_message = "Unknown event type."


@dataclass(frozen=True)
class IssuedSubscription:
    """A subscription and its new secret in clear: the only time the secret is shown."""

    subscription: WebhookSubscription
    secret: str


def _secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _event_types_clean(event_types: object) -> list[str]:
    if not isinstance(event_types, list) or not event_types:
        raise WebhookInvalid("event_types must be a non-empty list.", details={"event_types": []})
    if len(event_types) > MAX_EVENT_TYPES or not all(isinstance(t, str) for t in event_types):
        raise WebhookInvalid("event_types must be a list of event type names.")
    unknown = sorted({name for name in event_types if name not in WEBHOOK_EVENT_TYPES})
    if unknown:
        raise UnknownEventType(
            f"Unknown event type(s): {', '.join(unknown)}.",
            details={"unknown": unknown, "known": list(WEBHOOK_EVENT_TYPES)},
        )
    return sorted(set(event_types))


def _url_clean(url: str) -> str:
    try:
        target_check(url)
    except TargetRefused as refused:
        raise WebhookTargetRefused(str(refused), details={"url": url}) from refused
    return url


def subscription_create(
    *, url: str, event_types: object, description: str = "", is_active: bool = True
) -> IssuedSubscription:
    url = _url_clean(url)
    types = _event_types_clean(event_types)
    secret = _secret_new()
    subscription = WebhookSubscription.objects.create(
        url=url, event_types=types, description=description, is_active=is_active, secret=secret
    )
    return IssuedSubscription(subscription=subscription, secret=secret)


def subscription_update(
    *,
    subscription: WebhookSubscription,
    url: str | None = None,
    event_types: object = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> WebhookSubscription:
    """Changes what is given; enabling a disabled subscription clears its failure record."""
    fields = ["updated_at"]
    if url is not None:
        subscription.url = _url_clean(url)
        fields.append("url")
    if event_types is not None:
        subscription.event_types = _event_types_clean(event_types)
        fields.append("event_types")
    if description is not None:
        subscription.description = description
        fields.append("description")
    if is_active is not None:
        if is_active and not subscription.is_active:
            subscription.failing_since = None
            subscription.disabled_at = None
            subscription.disabled_reason = ""
            fields += ["failing_since", "disabled_at", "disabled_reason"]
        subscription.is_active = is_active
        fields.append("is_active")
    subscription.save(update_fields=fields)
    return subscription


def subscription_secret_rotate(
    *, subscription: WebhookSubscription, grace_seconds: int
) -> IssuedSubscription:
    """A new signing secret; the current one also signs for ``grace_seconds`` more."""
    if not 0 <= grace_seconds <= settings.WEBHOOKS_ROTATION_MAX_GRACE_SECONDS:
        raise WebhookInvalid(
            "grace_seconds is out of range.",
            details={"max": settings.WEBHOOKS_ROTATION_MAX_GRACE_SECONDS},
        )
    secret = _secret_new()
    with transaction.atomic():
        locked = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        locked.previous_secret = locked.secret if grace_seconds else None
        locked.previous_secret_expires_at = (
            timezone.now() + timedelta(seconds=grace_seconds) if grace_seconds else None
        )
        locked.secret = secret
        locked.save(
            update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"]
        )
    return IssuedSubscription(subscription=locked, secret=secret)


def signing_secrets(subscription: WebhookSubscription, *, now: datetime) -> list[str]:
    """The secrets a request is signed with now: the current one, then one in its grace period."""
    current = [subscription.secret]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and expires > now:
        current.append(subscription.previous_secret)
    return current


# Creating deliveries -----------------------------------------------------------------


def delivery_body(event: OutboxEvent) -> str:
    return json.dumps(
        {
            "id": str(event.id),
            "type": event.event_type,
            "created_at": event.created_at.isoformat(),
            "aggregate": {"type": event.aggregate_type, "id": event.aggregate_id},
            "data": event.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def deliveries_create_for_event(*, event: OutboxEvent) -> list[int]:
    """One pending delivery per active subscription to the event's type, in one INSERT.

    A second call for the same event (the relay retried it) creates nothing:
    the (subscription, event) pair is unique. Returns the ids of those that may
    be sent now: a delivery behind an earlier pending one of its aggregate is
    started when that one finishes, so starting it now would only be skipped.
    """
    subscribed = [
        pk
        for pk, event_types in WebhookSubscription.objects.filter(is_active=True).values_list(
            "pk", "event_types"
        )
        if event.event_type in event_types
    ]
    if not subscribed:
        return []
    body = delivery_body(event)
    now = timezone.now()
    request_id = str((event.correlation or {}).get(correlation.CARRIER_KEY, ""))[:128]
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                subscription_id=subscription_id,
                event_id=event.id,
                event_type=event.event_type,
                aggregate_type=event.aggregate_type,
                aggregate_id=event.aggregate_id,
                request_body=body,
                request_id=request_id,
                next_attempt_at=now,
            )
            for subscription_id in subscribed
        ],
        ignore_conflicts=True,
    )
    return list(
        WebhookDelivery.objects.filter(
            event_id=event.id, subscription_id__in=subscribed, status=DeliveryStatus.PENDING
        )
        .filter(_first_pending_of_aggregate())
        .values_list("pk", flat=True)
    )


# Sending -----------------------------------------------------------------------------


class Outcome(enum.Enum):
    SKIPPED = "skipped"  # not due, not first of its aggregate, leased elsewhere, or inactive
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    CIRCUIT_OPEN = "circuit_open"


@dataclass
class AttemptResult:
    outcome: Outcome
    # What to start next: (delivery id, delay in seconds).
    follow_ups: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class _Exchange:
    """What happened on the wire, filled in by the send inside the breaker."""

    sent: bool = False
    status: int | None = None
    body: str = ""
    error: str = ""
    retryable: bool = False
    retry_after: float | None = None
    latency_ms: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _first_pending_of_aggregate() -> Q:
    """The delivery is its aggregate's oldest pending one for its subscription.

    Written as "its id is the first pending id of the aggregate", a scalar
    subquery PostgreSQL runs per candidate as one probe of the pending-row
    index. The same rule as "no earlier pending delivery" (``NOT EXISTS``),
    which the planner turns into an anti-join: with statistics from before a
    burst of deliveries it read the whole pending-row index for every
    candidate (200,000 pending rows: over ten minutes for one page of due
    deliveries, 32 ms once analysed).
    """
    first = (
        WebhookDelivery.objects.filter(
            subscription_id=OuterRef("subscription_id"),
            aggregate_type=OuterRef("aggregate_type"),
            aggregate_id=OuterRef("aggregate_id"),
            status=DeliveryStatus.PENDING,
        )
        .order_by("pk")
        .values("pk")[:1]
    )
    return Q(pk=Subquery(first))


def _subscription_active() -> Exists:
    return Exists(
        WebhookSubscription.objects.filter(pk=OuterRef("subscription_id"), is_active=True)
    )


def _sendable(now: datetime) -> Q:
    return Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now) & (
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )


def delivery_claim(*, delivery_id: int, now: datetime) -> bool:
    """Takes the lease on a delivery that is due, free and first of its aggregate.

    One UPDATE on the row itself, so two senders racing for it cannot both win.
    """
    lease = timedelta(seconds=settings.WEBHOOKS_TIMEOUT_SECONDS * 2 + 30)
    claimed = (
        WebhookDelivery.objects.filter(_sendable(now), pk=delivery_id)
        .filter(_subscription_active())
        .filter(_first_pending_of_aggregate())
        .update(lease_until=now + lease)
    )
    return claimed == 1


def deliveries_due(*, limit: int = 500) -> list[int]:
    """Deliveries that could be sent now: due, free, first of their aggregate, subscription on."""
    now = timezone.now()
    due = (
        WebhookDelivery.objects.filter(_sendable(now))
        .filter(_subscription_active())
        .filter(_first_pending_of_aggregate())
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    # Along the due-row index, stopping after ``limit``: the planner cannot
    # tell how many candidates the first-of-aggregate rule keeps, and chose to
    # read and sort every pending row even with fresh statistics (1.2 s for
    # 200,000 pending, 27 ms along the index).
    with planner_methods_off("bitmapscan", "sort", "seqscan"):
        return list(due)


def retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter after the ``attempt``-th failure (1-based).

    Half the step is fixed and half random ("equal jitter"): failures of many
    deliveries at once spread out, and no retry comes back at once.
    """
    base = settings.WEBHOOKS_RETRY_BASE_SECONDS
    step = min(settings.WEBHOOKS_RETRY_CAP_SECONDS, base * 2 ** (attempt - 1))
    return step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not a secret


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now, capped."""
    if not value:
        return None
    value = value.strip()
    seconds: float
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, min(seconds, settings.WEBHOOKS_RETRY_AFTER_CAP_SECONDS))


def delivery_headers(
    *, delivery: WebhookDelivery, subscription: WebhookSubscription, now: datetime
) -> dict[str, str]:
    timestamp = int(now.timestamp())
    body = delivery.request_body.encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(
            secrets=signing_secrets(subscription, now=now), timestamp=timestamp, body=body
        ),
        "Emporium-Event-Id": str(delivery.event_id),
        "Emporium-Event-Type": delivery.event_type,
        "Emporium-Delivery-Id": str(delivery.pk),
        "Emporium-Delivery-Attempt": str(delivery.attempts + 1),
    }
    if delivery.request_id:
        headers[correlation.HEADER] = delivery.request_id
    return headers


def _send(client: httpx.Client, url: str, body: bytes, exchange: _Exchange, now: datetime) -> None:
    """Posts once; raises EndpointUnavailable (which the breaker counts) on a retryable failure."""
    started = time.perf_counter()
    try:
        with client.stream(
            "POST", url, content=body, headers=exchange.headers, timeout=request_timeout()
        ) as response:
            exchange.sent = True
            exchange.status = response.status_code
            received = bytearray()
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) >= RESPONSE_READ_LIMIT:
                    break
            exchange.body = received.decode("utf-8", "replace")[:RESPONSE_BODY_LIMIT]
            retry_after = response.headers.get("Retry-After")
    except TargetRefused as refused:
        exchange.sent = True
        exchange.error = f"refused: {refused}"[:500]
        return
    except httpx.TransportError as error:  # timeouts, refused or reset connections
        exchange.sent = True
        exchange.latency_ms = round((time.perf_counter() - started) * 1000)
        exchange.error = f"{type(error).__name__}: {error}"[:500]
        exchange.retryable = True
        raise EndpointUnavailable(exchange.error) from error
    exchange.latency_ms = round((time.perf_counter() - started) * 1000)
    status = exchange.status
    if status == 429 or status == 408 or status >= 500:
        exchange.retryable = True
        if status == 429 or status == 503:
            exchange.retry_after = retry_after_seconds(retry_after, now=now)
        exchange.error = f"answered {status}"
        raise EndpointUnavailable(exchange.error)
    if not 200 <= status < 300:
        exchange.error = f"answered {status}"


def delivery_attempt(*, delivery_id: int, client: httpx.Client | None = None) -> AttemptResult:
    """Sends a delivery once if it may go now; records what came of it.

    Safe to run twice or at once for one delivery: only the holder of the
    lease sends, and a delivery that is no longer pending is left alone. The
    receiver may still see a delivery twice (a sender that died after sending
    and before recording): it de-duplicates on Emporium-Event-Id.
    """
    now = timezone.now()
    if not delivery_claim(delivery_id=delivery_id, now=now):
        return AttemptResult(Outcome.SKIPPED)
    delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=delivery_id).first()
    if delivery is None:
        return AttemptResult(Outcome.SKIPPED)  # its subscription was deleted meanwhile
    subscription = delivery.subscription
    exchange = _Exchange(
        headers=delivery_headers(delivery=delivery, subscription=subscription, now=now)
    )
    breaker = endpoint_breaker(str(subscription.row_uuid))
    if _circuit_open(breaker):
        return _circuit_open_record(delivery=delivery, breaker=breaker)
    # Sent outside the breaker: pybreaker holds a lock for the whole of a call,
    # which would let one thread at a time talk to the endpoint.
    with contextlib.suppress(EndpointUnavailable):
        _send(
            client or delivery_client(),
            subscription.url,
            delivery.request_body.encode(),
            exchange,
            now,
        )
    # The outcome goes through the breaker afterwards, to count it (and, after
    # the reset timeout, to close or reopen the circuit on this trial's result).
    with contextlib.suppress(EndpointUnavailable, pybreaker.CircuitBreakerError):
        breaker.call(_outcome_report, exchange)
    return _attempt_record(delivery=delivery, exchange=exchange)


def _circuit_open(breaker: pybreaker.CircuitBreaker) -> bool:
    """Whether the endpoint's circuit is open and its reset timeout has not run out."""
    if breaker.current_state != pybreaker.STATE_OPEN:
        return False
    opened_at = breaker._state_storage.opened_at  # pybreaker keeps it only there
    reset = timedelta(seconds=breaker.reset_timeout)
    return opened_at is not None and timezone.now() < opened_at + reset


def _outcome_report(exchange: _Exchange) -> None:
    if exchange.retryable:
        raise EndpointUnavailable(exchange.error)


def _circuit_open_record(
    *, delivery: WebhookDelivery, breaker: pybreaker.CircuitBreaker
) -> AttemptResult:
    """Puts the delivery back until the breaker lets a trial call through; no attempt counted."""
    opened_at = breaker._state_storage.opened_at
    reset = timedelta(seconds=breaker.reset_timeout)
    now = timezone.now()
    retry_at = max(now, (opened_at + reset) if opened_at else now + reset)
    WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
        next_attempt_at=retry_at, lease_until=None, last_error="circuit open"
    )
    delay = (retry_at - now).total_seconds()
    return AttemptResult(Outcome.CIRCUIT_OPEN, [(delivery.pk, delay)])


def _next_of_aggregate(delivery: WebhookDelivery) -> list[tuple[int, float]]:
    following = (
        WebhookDelivery.objects.filter(
            subscription_id=delivery.subscription_id,
            aggregate_type=delivery.aggregate_type,
            aggregate_id=delivery.aggregate_id,
            status=DeliveryStatus.PENDING,
            pk__gt=delivery.pk,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    return [] if following is None else [(following, 0.0)]


def _attempt_record(*, delivery: WebhookDelivery, exchange: _Exchange) -> AttemptResult:
    now = timezone.now()
    attempt = delivery.attempts + 1
    delivered = exchange.status is not None and 200 <= exchange.status < 300 and not exchange.error
    delay = 0.0
    if delivered:
        outcome = Outcome.DELIVERED
    elif exchange.retryable and attempt < settings.WEBHOOKS_MAX_ATTEMPTS:
        outcome = Outcome.RETRY
        delay = retry_delay(attempt)
        if exchange.retry_after is not None:
            delay = exchange.retry_after
    else:
        outcome = Outcome.FAILED
    status = {
        Outcome.DELIVERED: DeliveryStatus.DELIVERED,
        Outcome.RETRY: DeliveryStatus.PENDING,
        Outcome.FAILED: DeliveryStatus.FAILED,
    }[outcome]
    error = exchange.error
    if outcome is Outcome.FAILED and exchange.retryable:
        error = f"{error} (gave up after {attempt} attempts)"[:500]
    with transaction.atomic():
        updated = WebhookDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts
        ).update(
            status=status,
            attempts=attempt,
            response_status=exchange.status,
            response_body=exchange.body,
            latency_ms=exchange.latency_ms,
            last_error=error,
            last_attempt_at=now,
            next_attempt_at=now + timedelta(seconds=delay),
            lease_until=None,
            delivered_at=now if delivered else None,
        )
        if not updated:
            # The lease ran out and another sender recorded this attempt first.
            return AttemptResult(Outcome.SKIPPED)
        WebhookAttempt.objects.create(
            delivery_id=delivery.pk,
            number=attempt,
            request_headers=exchange.headers,
            response_status=exchange.status,
            response_body=exchange.body,
            latency_ms=exchange.latency_ms,
            error=error,
        )
        _subscription_health_note(
            subscription_id=delivery.subscription_id,
            healthy=delivered,
            failed=exchange.retryable,
            now=now,
        )
    logger.info(
        "webhook delivery %s to subscription %s: %s (attempt %s, status %s)",
        delivery.pk,
        delivery.subscription_id,
        outcome.value,
        attempt,
        exchange.status,
    )
    if outcome is Outcome.RETRY:
        return AttemptResult(outcome, [(delivery.pk, delay)])
    return AttemptResult(outcome, _next_of_aggregate(delivery))


def _subscription_health_note(
    *, subscription_id: int, healthy: bool, failed: bool, now: datetime
) -> None:
    subscriptions = WebhookSubscription.objects.filter(pk=subscription_id)
    if healthy:
        subscriptions.filter(failing_since__isnull=False).update(failing_since=None)
        return
    if not failed:
        return  # a final 4xx is the endpoint answering, not failing
    subscriptions.filter(failing_since__isnull=True).update(failing_since=now)
    limit = timedelta(seconds=settings.WEBHOOKS_DISABLE_AFTER_SECONDS)
    reason = f"every attempt failed for over {int(limit.total_seconds())} seconds"
    disabled = subscriptions.filter(is_active=True, failing_since__lte=now - limit).update(
        is_active=False, disabled_at=now, disabled_reason=reason
    )
    if disabled:
        transaction.on_commit(lambda: subscription_disabled_notify(subscription_id=subscription_id))


def subscription_disabled_notify(*, subscription_id: int) -> None:
    """Tells staff a subscription was disabled: a log line and an e-mail to every staff account."""
    subscription = WebhookSubscription.objects.get(pk=subscription_id)
    logger.error(
        "webhook subscription %s (%s) disabled: %s",
        subscription.pk,
        subscription.url,
        subscription.disabled_reason,
    )
    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .order_by("pk")
        .values_list("email", flat=True)
    )
    if not recipients:
        return
    try:
        send_mail(
            subject=f"Webhook subscription {subscription.pk} disabled",
            message=(
                f"The webhook subscription {subscription.pk} to {subscription.url} was disabled: "
                f"{subscription.disabled_reason}.\n\nIts undelivered events wait; enable it "
                f"again (PATCH /api/webhooks/{subscription.pk}/ with is_active true) once the "
                "endpoint answers, and they are sent in order."
            ),
            from_email=None,
            recipient_list=recipients,
        )
    except Exception:  # the subscription is disabled either way; the log line says so
        logger.exception("could not e-mail staff about webhook subscription %s", subscription.pk)


def delivery_replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Sends a delivered or failed delivery again, as a new round of attempts.

    It becomes pending again with a fresh count of attempts (the log keeps
    every earlier attempt), and later deliveries of its aggregate that are
    still pending wait for it, as they did the first time.
    """
    updated = WebhookDelivery.objects.filter(
        pk=delivery.pk, status__in=[DeliveryStatus.DELIVERED, DeliveryStatus.FAILED]
    ).update(
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=timezone.now(),
        lease_until=None,
        delivered_at=None,
        last_error="",
    )
    if not updated:
        raise Conflict("This delivery is still pending; it is sent without a replay.")
    delivery.refresh_from_db()
    return delivery
