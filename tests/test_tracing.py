"""One trace from a request, through the outbox and the relay, to the task the event starts.

Tracing is started as ``emporium.observability.tracing`` starts it in production,
with an in-memory exporter in place of OTLP. The payment request records its
event; the relay runs later, outside the request, and can only join the trace
through the context stored with the event; the payment task it starts (run in
this process, as a worker would run it) continues the same trace and calls
the simulated provider.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from celery import current_app
from django.db import connection
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from rest_framework.test import APIClient

from emporium.carts import services as cart_services
from emporium.core import correlation
from emporium.core.tests.factories import ProductFactory, UserFactory, client_for
from emporium.integrations.models import OutboxEvent
from emporium.integrations.relay import outbox_relay_pending
from emporium.observability import tracing
from emporium.observability.tests.logs import logs_captured
from emporium.payments.gateway import provider_breaker
from emporium.payments.models import Payment, PaymentStatus
from tests.support.processes import ProviderProcess

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = tracing.tracer_provider_make(SimpleSpanProcessor(exporter))
    tracing.tracing_start(provider)
    try:
        yield exporter
    finally:
        tracing.tracing_stop()
        provider.shutdown()


def _trace_ids(spans: list[ReadableSpan], *, name: str) -> set[int]:
    return {span.context.trace_id for span in spans if span.name == name and span.context}


def _server_span(spans: list[ReadableSpan], *, route: str) -> ReadableSpan:
    [span] = [
        span
        for span in spans
        if span.kind == SpanKind.SERVER and (span.attributes or {}).get("http.route") == route
    ]
    return span


def test_a_payment_request_its_relay_and_its_task_are_one_trace(
    spans: InMemorySpanExporter,
    payment_provider: ProviderProcess,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Tasks run here, in this process: their span is the worker's, without a worker.
    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    settings.PAYMENT_BREAKER_FAIL_MAX = 50
    provider_breaker.cache_clear()
    user = UserFactory()
    product = ProductFactory(price=Decimal("20.00"), stock_quantity=5)
    cart_services.cart_item_add(user=user, product=product, quantity=1)
    client: APIClient = client_for(user)

    with logs_captured() as logs:
        order_id = client.post("/api/orders/").json()["id"]
        paying = client.post(
            f"/api/orders/{order_id}/payments/",
            {"payment_method": "card", "token": "tok_visa"},
            format="json",
        )
        assert paying.status_code == 201, paying.content
        outbox_relay_pending()

    finished = list(spans.get_finished_spans())
    checkout = _server_span(finished, route="api/orders/$")
    payment_request = _server_span(finished, route="api/orders/<int:order_pk>/payments/")
    assert checkout.context is not None
    assert payment_request.context is not None
    assert checkout.context.trace_id != payment_request.context.trace_id
    # Each event stored the trace of the request that recorded it.
    stored = {
        event.event_type: event.correlation.get("traceparent", "").split("-")[1:3]
        for event in OutboxEvent.objects.filter(
            event_type__in=["order.placed", "payment.requested"]
        )
    }
    assert stored == {
        "order.placed": [f"{checkout.context.trace_id:032x}", f"{checkout.context.span_id:016x}"],
        "payment.requested": [
            f"{payment_request.context.trace_id:032x}",
            f"{payment_request.context.span_id:016x}",
        ],
    }
    # The relay, the task and the task's statements are in the request's trace.
    assert _trace_ids(finished, name="outbox payment.requested") == {
        payment_request.context.trace_id
    }
    assert _trace_ids(finished, name="run/payments.process") == {payment_request.context.trace_id}
    assert _trace_ids(finished, name="outbox order.placed") == {checkout.context.trace_id}
    assert _trace_ids(finished, name="run/orders.send_confirmation_email") == {
        checkout.context.trace_id
    }
    task = next(span for span in finished if span.name == "run/payments.process")
    # psycopg is instrumented; SQLite is not.
    assert connection.vendor != "postgresql" or any(
        span.parent is not None
        and span.parent.span_id == task.context.span_id  # type: ignore[union-attr]
        and span.kind == SpanKind.CLIENT
        for span in finished
    ), "the task's database statements are spans of the task"
    assert Payment.objects.get(order_id=order_id).status == PaymentStatus.SUCCEEDED
    # Log lines name the span they were written in.
    relayed = [
        line for line in logs.lines() if line["event"].startswith("outbox event payment.requested")
    ]
    assert [line["trace_id"] for line in relayed] == [f"{payment_request.context.trace_id:032x}"]


def test_without_an_endpoint_tracing_stays_off(settings: Any) -> None:
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = None

    assert tracing.tracing_configure() is False
    assert "traceparent" not in correlation.carrier()


def test_without_an_endpoint_no_process_loads_the_tracing_sdk() -> None:
    """The web and worker entry points load neither the trace SDK, an exporter nor an
    instrumentation when no endpoint is set (the Redis client may load OpenTelemetry's
    metrics API for itself)."""
    script = (
        "import sys, django; django.setup(); import config.wsgi, config.celery; "
        "print(sorted(m for m in sys.modules if m.startswith(("
        "'opentelemetry.sdk.trace', 'opentelemetry.exporter', "
        "'opentelemetry.instrumentation', 'opentelemetry.propagate'))))"
    )
    environment = {
        key: value for key, value in os.environ.items() if key != "OTEL_EXPORTER_OTLP_ENDPOINT"
    }
    environment["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    loaded = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()

    assert loaded == "[]"
