"""E-mail: templated messages sent over one SMTP session per batch, with failover.

Each delivery is rendered from Django templates ``notification_channels/email/
<kind>.txt`` and ``.html`` (``default.txt`` / ``default.html`` for a kind
without its own). With SMTP endpoints configured (``EMAIL_URL`` and
``EMAIL_FAILOVER_URL``) a batch opens one session and sends every message
through it; where the server offers PIPELINING (RFC 2920) the MAIL, RCPT and
DATA commands of a message go in one write. A reply of 4xx or a lost
connection is transient (retried with backoff), 5xx is permanent (parked).
When the first endpoint cannot be reached the second is used, and the first
is left alone for ``NOTIFICATION_EMAIL_ENDPOINT_COOLDOWN_SECONDS``.

Without SMTP endpoints (the embedded profile) the messages go to Django's
e-mail backend, files under var/mail.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import json
import logging
import re
import secrets
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template import TemplateDoesNotExist
from django.template.loader import select_template

from emporium.notifications.channels.models import Delivery
from emporium.notifications.channels.outcomes import Outcome, OutcomeResult

logger = logging.getLogger(__name__)

TEMPLATE_DIRECTORY = "notification_channels/email"
_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True)
class SmtpEndpoint:
    host: str
    port: int
    username: str = ""
    password: str = ""
    use_tls: bool = False
    use_ssl: bool = False
    timeout: float = 10.0

    @classmethod
    def from_setting(cls, value: dict[str, Any]) -> SmtpEndpoint:
        return cls(
            host=str(value["HOST"]),
            port=int(value["PORT"]),
            username=str(value.get("USER") or ""),
            password=str(value.get("PASSWORD") or ""),
            use_tls=bool(value.get("USE_TLS")),
            use_ssl=bool(value.get("USE_SSL")),
            timeout=float(value.get("TIMEOUT") or settings.EMAIL_TIMEOUT or 10),
        )


def smtp_endpoints() -> list[SmtpEndpoint]:
    return [SmtpEndpoint.from_setting(value) for value in settings.NOTIFICATION_EMAIL_ENDPOINTS]


@dataclass(frozen=True)
class RenderedEmail:
    delivery_id: int
    recipient: str
    subject: str
    text: str
    html: str
    message_id: str
    kind: str

    def django_message(self) -> EmailMultiAlternatives:
        message = EmailMultiAlternatives(
            subject=self.subject,
            body=self.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[self.recipient],
            headers={"Message-ID": self.message_id, "X-Emporium-Kind": self.kind},
        )
        message.attach_alternative(self.html, "text/html")
        return message

    def as_bytes(self, *, sender: str) -> bytes:
        """The MIME message (multipart/alternative, quoted-printable parts), CRLF line ends.

        Composed directly: the standard library's generator folds every header
        and compiles a regular expression per boundary, several times the cost
        of the rest of a send.
        """
        boundary = f"=_emporium_{secrets.token_hex(12)}"
        head = "\r\n".join(
            [
                f"From: {sender}",
                f"To: {_header_safe(self.recipient)}",
                f"Subject: {_header_encode(self.subject)}",
                f"Date: {_date_now()}",
                f"Message-ID: {self.message_id}",
                "MIME-Version: 1.0",
                f"X-Emporium-Kind: {_header_safe(self.kind)}",
                f'Content-Type: multipart/alternative; boundary="{boundary}"',
            ]
        )
        return b"".join(
            [
                head.encode("utf-8"),
                b"\r\n\r\n",
                _part(boundary, "text/plain", self.text),
                _part(boundary, "text/html", self.html),
                f"--{boundary}--\r\n".encode(),
            ]
        )


def _header_safe(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def _header_encode(value: str) -> str:
    value = _header_safe(value)
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "utf-8").encode()


_date_cache: tuple[int, str] = (0, "")


def _date_now() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def _part(boundary: str, content_type: str, content: str) -> bytes:
    encoded = binascii.b2a_qp(content.encode("utf-8"), istext=True)
    encoded = encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (
        (
            f'--{boundary}\r\nContent-Type: {content_type}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        + encoded
        + b"\r\n"
    )


@functools.lru_cache(maxsize=8)
def _domain_of(from_email: str) -> str:
    return parseaddr(from_email)[1].rpartition("@")[2] or "emporium.local"


def _message_id(delivery: Delivery) -> str:
    # Stable across retries, so a receiving system can drop a duplicate.
    return f"<notification.{delivery.id}@{_domain_of(settings.DEFAULT_FROM_EMAIL)}>"


def email_render(delivery: Delivery) -> RenderedEmail:
    payload = delivery.payload or {}
    context = {
        "kind": delivery.kind,
        "title": payload.get("title", ""),
        "body": payload.get("body", ""),
        "data": payload.get("data") or {},
        "recipient": delivery.recipient,
    }
    return RenderedEmail(
        delivery_id=delivery.id,
        recipient=delivery.recipient.email,
        subject=str(context["title"]) or "Emporium",
        text=_render(delivery.kind, "txt", context, payload),
        html=_render(delivery.kind, "html", context, payload),
        message_id=_message_id(delivery),
        kind=delivery.kind,
    )


_templates: dict[tuple[str, str], Any] = {}
_rendered: dict[tuple[str, str, str], str] = {}
_PERSONAL = ("recipient", "{% extends", "{% include")


def _render(kind: str, extension: str, context: dict[str, Any], payload: dict[str, Any]) -> str:
    """The template rendered; once per distinct payload when it says nothing of the recipient.

    A broadcast sends the same words to everyone: rendering them once instead of
    per message takes a third of a worker's CPU off each e-mail. A template that
    names ``recipient`` (or extends or includes another) is rendered every time.
    """
    template = _template(kind, extension)
    source = getattr(getattr(template, "template", None), "source", "recipient")
    if any(marker in source for marker in _PERSONAL):
        return str(template.render(context))
    key = (kind, extension, json.dumps(payload, sort_keys=True, default=str))
    found = _rendered.get(key)
    if found is None:
        found = str(template.render(context))
        if len(_rendered) >= 256:
            _rendered.clear()
        _rendered[key] = found
    return found


def _template(kind: str, extension: str) -> Any:
    key = (kind, extension)
    found = _templates.get(key)
    if found is None:
        found = select_template(
            [
                f"{TEMPLATE_DIRECTORY}/{kind}.{extension}",
                f"{TEMPLATE_DIRECTORY}/default.{extension}",
            ]
        )
        if len(_templates) < 1000:  # kinds are a short, fixed list; bound it anyway
            _templates[key] = found
    return found


class SmtpReplyError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class PipeliningSMTP(smtplib.SMTP):
    """smtplib's client plus one mail transaction per call, pipelined where offered."""

    def transaction(self, sender: str, recipient: str, data: bytes) -> tuple[int, str]:
        commands = [f"MAIL FROM:<{sender}>", f"RCPT TO:<{recipient}>", "DATA"]
        expected = [(250,), (250, 251), (354,)]
        replies: list[tuple[int, bytes]] = []
        if self.does_esmtp and self.has_extn("pipelining"):
            self.send("".join(command + "\r\n" for command in commands))
            replies = [self.getreply() for _ in commands]
        else:
            for command, accepted in zip(commands, expected, strict=True):
                self.send(command + "\r\n")
                replies.append(self.getreply())
                if replies[-1][0] not in accepted:
                    break
        for (code, text), accepted in zip(replies, expected, strict=False):
            if code not in accepted:
                if replies[-1][0] == 354:  # DATA was accepted after a refused step
                    self.send(b".\r\n")
                    self.getreply()
                self._reset()
                return code, text.decode("utf-8", "replace")
        self.send(_LEADING_DOT.sub(b"..", data) + b"\r\n.\r\n")
        code, text = self.getreply()
        if code == 421:
            raise smtplib.SMTPServerDisconnected(text.decode("utf-8", "replace"))
        return code, text.decode("utf-8", "replace")

    def _reset(self) -> None:
        with contextlib.suppress(smtplib.SMTPException):
            self.rset()


_down_until: dict[SmtpEndpoint, float] = {}


def _connect(endpoints: Sequence[SmtpEndpoint]) -> PipeliningSMTP:
    """A session on the first endpoint that answers; endpoints that just failed go last."""
    now = time.monotonic()
    ordered = sorted(endpoints, key=lambda endpoint: _down_until.get(endpoint, 0.0) > now)
    last_error: Exception | None = None
    for endpoint in ordered:
        try:
            return _open(endpoint)
        except (OSError, smtplib.SMTPException) as error:
            last_error = error
            _down_until[endpoint] = time.monotonic() + float(
                settings.NOTIFICATION_EMAIL_ENDPOINT_COOLDOWN_SECONDS
            )
            logger.warning(
                "SMTP endpoint %s:%s unavailable: %s", endpoint.host, endpoint.port, error
            )
    raise ConnectionError(f"no SMTP endpoint answered: {last_error}")


def _open(endpoint: SmtpEndpoint) -> PipeliningSMTP:
    if endpoint.use_ssl:
        client: PipeliningSMTP = _PipeliningSMTPSSL(
            endpoint.host,
            endpoint.port,
            timeout=endpoint.timeout,
            context=ssl.create_default_context(),
        )
    else:
        client = PipeliningSMTP(endpoint.host, endpoint.port, timeout=endpoint.timeout)
    try:
        code, text = client.ehlo()
        if code != 250:
            raise SmtpReplyError(code, text.decode("utf-8", "replace"))
        if endpoint.use_tls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if endpoint.username:
            client.login(endpoint.username, endpoint.password)
    except (SmtpReplyError, smtplib.SMTPException, OSError):
        client.close()
        raise
    return client


class _PipeliningSMTPSSL(PipeliningSMTP, smtplib.SMTP_SSL):
    pass


def _quit(client: smtplib.SMTP | None) -> None:
    if client is None:
        return
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def deliveries_send(deliveries: list[Delivery], report: Callable[[Outcome], None]) -> None:
    """Renders and sends one batch, reporting an outcome for every delivery."""
    rendered: list[RenderedEmail] = []
    for delivery in deliveries:
        if not delivery.recipient.email:
            report(
                Outcome(delivery.id, OutcomeResult.SKIPPED, "the recipient has no e-mail address")
            )
            continue
        try:
            rendered.append(email_render(delivery))
        except TemplateDoesNotExist as error:
            report(Outcome(delivery.id, OutcomeResult.PERMANENT, f"template missing: {error}"))
    if not rendered:
        return
    endpoints = smtp_endpoints()
    if endpoints:
        _send_smtp(rendered, endpoints, report)
    else:
        _send_backend(rendered, report)


def _send_backend(rendered: list[RenderedEmail], report: Callable[[Outcome], None]) -> None:
    """Django's configured backend (files in the embedded profile): all or none."""
    try:
        get_connection(fail_silently=False).send_messages(
            [item.django_message() for item in rendered]
        )
    except (OSError, smtplib.SMTPException) as error:
        for item in rendered:
            report(Outcome(item.delivery_id, OutcomeResult.TRANSIENT, f"backend: {error}"))
        return
    for item in rendered:
        report(Outcome(item.delivery_id, OutcomeResult.SENT))


def _send_smtp(
    rendered: list[RenderedEmail],
    endpoints: Sequence[SmtpEndpoint],
    report: Callable[[Outcome], None],
) -> None:
    """Sends the batch over as few sessions as possible: one unless a session is lost."""
    sender = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    sender_header = formataddr(parseaddr(settings.DEFAULT_FROM_EMAIL), charset="utf-8")
    remaining = rendered
    while remaining:
        try:
            client = _connect(endpoints)
        except ConnectionError as error:
            for item in remaining:
                report(Outcome(item.delivery_id, OutcomeResult.TRANSIENT, str(error)))
            return
        try:
            if client.has_extn("pipelining"):
                done = _session_pipelined(client, remaining, sender, sender_header, report)
            else:
                done = _session_serial(client, remaining, sender, sender_header, report)
        finally:
            _quit(client)
        remaining = remaining[done:]


def _reply_outcome(item: RenderedEmail, code: int, text: str) -> Outcome:
    if 200 <= code < 300:
        return Outcome(item.delivery_id, OutcomeResult.SENT)
    if 400 <= code < 500:
        return Outcome(item.delivery_id, OutcomeResult.TRANSIENT, f"SMTP {code} {text}")
    return Outcome(item.delivery_id, OutcomeResult.PERMANENT, f"SMTP {code} {text}")


def _session_serial(
    client: PipeliningSMTP,
    items: list[RenderedEmail],
    sender: str,
    sender_header: str,
    report: Callable[[Outcome], None],
) -> int:
    """One message at a time; returns how many were dealt with (all, unless the session broke)."""
    for position, item in enumerate(items):
        try:
            code, text = client.transaction(
                sender, item.recipient, item.as_bytes(sender=sender_header)
            )
        except OSError as error:  # smtplib's errors are OSErrors: the session is gone
            report(Outcome(item.delivery_id, OutcomeResult.TRANSIENT, f"connection: {error}"))
            return position + 1
        report(_reply_outcome(item, code, text))
        if code == 421:  # the server is closing the session
            return position + 1
    return len(items)


def _envelope(sender: str, recipient: str) -> bytes:
    return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()


def _reply(client: PipeliningSMTP) -> tuple[int, str]:
    code, text = client.getreply()
    return code, text.decode("utf-8", "replace")


def _session_pipelined(
    client: PipeliningSMTP,
    items: list[RenderedEmail],
    sender: str,
    sender_header: str,
    report: Callable[[Outcome], None],
) -> int:
    """RFC 2920 across messages: one write and one wait per message.

    Each write carries the previous message's content (whose envelope the
    server accepted) and the next message's MAIL, RCPT and DATA; the replies
    come back in that order. Returns how many messages were dealt with.
    """
    carried: RenderedEmail | None = None  # envelope accepted, content not sent yet
    in_flight: list[RenderedEmail] = []  # written, not yet reported
    reset = False
    position = 0
    try:
        while position < len(items) or carried is not None:
            following = items[position] if position < len(items) else None
            write = b""
            if carried is not None:
                write += _LEADING_DOT.sub(b"..", carried.as_bytes(sender=sender_header))
                write += b"\r\n.\r\n"
            if reset:
                write += b"RSET\r\n"
            if following is not None:
                write += _envelope(sender, following.recipient)
                in_flight.append(following)
                position += 1
            client.send(write)
            if carried is not None:
                code, text = _reply(client)
                report(_reply_outcome(carried, code, text))
                in_flight.remove(carried)
                carried = None
                if code == 421:
                    break
            if reset:
                _reply(client)
                reset = False
            if following is None:
                break
            replies = [_reply(client) for _ in range(3)]
            if [code for code, _ in replies] in ([250, 250, 354], [250, 251, 354]):
                carried = following
                continue
            expected = ((250,), (250, 251), (354,))
            refused = next(
                (reply for reply, accepted in zip(replies, expected, strict=True)
                 if reply[0] not in accepted),
                replies[-1],
            )  # fmt: skip
            if replies[2][0] == 354:  # DATA accepted after a refused step: end it empty
                client.send(b".\r\n")
                _reply(client)
            report(_reply_outcome(following, *refused))
            in_flight.remove(following)
            if any(code == 421 for code, _ in replies):
                break
            reset = True
    except OSError as error:  # the session broke: whatever was in flight is unknown
        for item in in_flight:
            report(Outcome(item.delivery_id, OutcomeResult.TRANSIENT, f"connection: {error}"))
        return position
    # A 421 (the server closes the session): the message whose envelope went with
    # the refused one is sent again in the next session.
    for item in in_flight:
        return items.index(item)
    return position
