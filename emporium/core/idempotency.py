"""Idempotency-Key support for unsafe requests (IETF httpapi draft, Stripe semantics).

A view wraps its work in :func:`idempotent`::

    return idempotent(view=self, request=request, scope="orders.place",
                      produce=lambda: self._place(request))

* no header: the work runs as usual;
* empty, longer than 255 characters, or with a character outside printable
  ASCII (``KEY_PATTERN``): 400 ``idempotency_key_invalid``;
* first use: the key is claimed in its own committed row, then the work and
  the storing of its response happen in one transaction, so a crash leaves
  neither an order nor a stored answer behind;
* same key, same body, finished: the stored status and bytes are replayed
  (``Idempotent-Replayed: true``);
* same key, different body or endpoint: 422 ``idempotency_key_reused``;
* same key while the first request still runs: 409 ``idempotency_in_progress``.

Final outcomes (2xx and 4xx) are stored; a 5xx or a crash releases the key so
the client's retry runs the work again. Keys live ``IDEMPOTENCY_KEY_TTL``
(24 h by default); ``idempotency_keys_purge`` deletes expired ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.http.request import RawPostDataException
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from emporium.core.errors import ApplicationError, Conflict, InvalidInput
from emporium.core.models import IdempotencyKey

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Printable ASCII, spaces only inside (HTTP trims them at the ends): what a header
# carries unchanged through every proxy. The OpenAPI document declares this pattern.
KEY_PATTERN = rf"^[!-~](?:[ -~]{{0,{MAX_KEY_LENGTH - 2}}}[!-~])?$"
_KEY = re.compile(KEY_PATTERN)
REPLAY_HEADER = "Idempotent-Replayed"


class IdempotencyKeyInvalid(InvalidInput):
    code = "idempotency_key_invalid"
    default_message = (
        f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters."
    )


class IdempotencyKeyReused(ApplicationError):
    status_code = 422
    code = "idempotency_key_reused"
    default_message = f"This {HEADER} was already used with a different request."


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"
    default_message = f"A request with this {HEADER} is still being processed; retry later."


def _ttl() -> timedelta:
    return timedelta(seconds=getattr(settings, "IDEMPOTENCY_KEY_TTL_SECONDS", 24 * 3600))


def _lock_duration() -> timedelta:
    return timedelta(seconds=getattr(settings, "IDEMPOTENCY_LOCK_SECONDS", 60))


def read_key(request: Request) -> str | None:
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if _KEY.fullmatch(key) is None:
        raise IdempotencyKeyInvalid()
    return key


def fingerprint(request: Request, scope: str) -> str:
    """Hash of what makes two requests "the same": operation, path and raw body."""
    digest = hashlib.sha256()
    digest.update(scope.encode())
    digest.update(b"\0")
    digest.update(request.method.encode() if request.method else b"")
    digest.update(request.get_full_path().encode())
    digest.update(b"\0")
    try:
        digest.update(request.body)
    except RawPostDataException:
        # The body was already streamed into request.data; hash its canonical form.
        digest.update(json.dumps(request.data, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _claim(
    *, user_id: int, key: str, scope: str, request_fingerprint: str
) -> IdempotencyKey | HttpResponse:
    """Claims the key for this request, or answers for it from what is stored."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(
                user_id=user_id,
                key=key,
                scope=scope,
                request_fingerprint=request_fingerprint,
                locked_until=now + _lock_duration(),
                expires_at=now + _ttl(),
            )
    except IntegrityError:
        pass
    record = IdempotencyKey.objects.filter(user_id=user_id, key=key).first()
    if record is None:
        # Purged between our insert and read; one more claim settles it.
        return _claim(
            user_id=user_id, key=key, scope=scope, request_fingerprint=request_fingerprint
        )
    if record.expires_at <= now:
        IdempotencyKey.objects.filter(pk=record.pk, expires_at__lte=now).delete()
        return _claim(
            user_id=user_id, key=key, scope=scope, request_fingerprint=request_fingerprint
        )
    if record.scope != scope or record.request_fingerprint != request_fingerprint:
        raise IdempotencyKeyReused()
    if record.completed_at is not None:
        return _replay(record)
    # In flight. Take it over only if the first attempt's lock ran out (it died).
    taken = IdempotencyKey.objects.filter(
        pk=record.pk, completed_at__isnull=True, locked_until__lte=now
    ).update(locked_until=now + _lock_duration())
    if not taken:
        raise IdempotencyInProgress()
    record.refresh_from_db()
    return record


def _replay(record: IdempotencyKey) -> HttpResponse:
    response = HttpResponse(
        bytes(record.response_body or b""),
        status=record.response_status or 200,
        content_type=record.response_content_type or "application/json",
    )
    response[REPLAY_HEADER] = "true"
    return response


def _render(view: APIView, request: Request, response: Response) -> HttpResponse:
    """Renders a DRF response to final bytes, so the first answer and replays match exactly."""
    renderer = JSONRenderer()
    response.accepted_renderer = renderer
    response.accepted_media_type = renderer.media_type
    response.renderer_context = view.get_renderer_context()  # type: ignore[attr-defined]
    response.render()
    rendered = HttpResponse(
        response.content, status=response.status_code, content_type="application/json"
    )
    for header in ("Location", "Retry-After"):
        if header in response:
            rendered[header] = response[header]
    return rendered


def idempotent(
    *, view: APIView, request: Request, scope: str, produce: Callable[[], Response]
) -> HttpResponse | Response:
    key = read_key(request)
    if key is None:
        return produce()
    if not request.user.is_authenticated:
        return produce()  # keys are scoped to users; the view's permissions answer first
    request_fingerprint = fingerprint(request, scope)
    claimed = _claim(
        user_id=int(request.user.pk),
        key=key,
        scope=scope,
        request_fingerprint=request_fingerprint,
    )
    if isinstance(claimed, HttpResponse):
        return claimed
    record = claimed
    try:
        with transaction.atomic():
            rendered = _render(view, request, produce())
            _store(record, rendered)
    except Exception as error:
        response = view.handle_exception(error)
        if response.status_code >= 500:
            IdempotencyKey.objects.filter(pk=record.pk, completed_at__isnull=True).delete()
            return response
        rendered = _render(view, request, response)
        _store(record, rendered)
    return rendered


def _store(record: IdempotencyKey, rendered: HttpResponse) -> None:
    if rendered.status_code >= 500:
        IdempotencyKey.objects.filter(pk=record.pk).delete()
        return
    record.response_status = rendered.status_code
    record.response_content_type = rendered["Content-Type"]
    record.response_body = rendered.content
    record.completed_at = timezone.now()
    record.save(
        update_fields=["response_status", "response_content_type", "response_body", "completed_at"]
    )


def idempotency_keys_purge(*, now: Any = None) -> int:
    """Deletes keys past their expiry; returns how many."""
    deleted, _ = IdempotencyKey.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
