"""OpenTelemetry traces, on only when an OTLP endpoint is configured.

``OTEL_EXPORTER_OTLP_ENDPOINT`` set (read in ``config.settings.env``): every
process that sets up Django (web servers, Celery workers, the outbox relay)
exports spans over OTLP/HTTP in batches, and Django's requests, psycopg's
statements, Redis commands and Celery's publishes and runs are instrumented.
Unset: this module returns at once and the SDK is never imported, so a
process without tracing pays nothing for it.

A trace follows the work across the outbox: the checkout's (or payment
request's) span context is stored with each event it records
(``emporium.core.correlation``), the relay runs each event in a span of that
trace, and the tasks it starts carry it in their message headers (the Celery
instrumentation), so one trace shows the request, the relay and the task.

Requests the lean gateway answers (``emporium.core.gateway``) have no span:
its hot reads are the ones tracing would cost the most.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings

from emporium.core import correlation

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

SERVICE_NAME = "emporium"
# Neither probes nor scrapes make a trace: OperationalEndpointsMiddleware answers
# them, so the tracing middleware goes right after it (the instrumentation reads
# its place from this variable; by default it would go first).
OPERATIONAL_MIDDLEWARE = "emporium.observability.operational.OperationalEndpointsMiddleware"

_instrumentors: list[Any] = []


def tracing_configure() -> bool:
    """Starts tracing from the settings; whether it is on. Called once by the app's ready()."""
    endpoint: str | None = settings.OTEL_EXPORTER_OTLP_ENDPOINT
    if not endpoint:
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider = tracer_provider_make(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracing_start(provider)
    return True


def tracer_provider_make(processor: SpanProcessor) -> TracerProvider:
    """A provider for this service (``OTEL_SERVICE_NAME`` overrides the name) with ``processor``."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    provider.add_span_processor(processor)
    return provider


def tracing_start(provider: TracerProvider) -> None:
    """Instruments Django, psycopg, Redis and Celery and lets correlation carry trace context."""
    from opentelemetry import context, propagate, trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    tracer = provider.get_tracer("emporium")

    def inject(carrier: dict[str, str]) -> None:
        propagate.inject(carrier)

    @contextlib.contextmanager
    def continue_in(carrier: Mapping[str, object], name: str) -> Iterator[None]:
        text = {key: value for key, value in carrier.items() if isinstance(value, str)}
        token = context.attach(propagate.extract(text))
        try:
            with tracer.start_as_current_span(name, kind=trace.SpanKind.CONSUMER):
                yield
        finally:
            context.detach(token)

    def current_ids() -> tuple[str, str] | None:
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"

    if OPERATIONAL_MIDDLEWARE in settings.MIDDLEWARE:
        os.environ.setdefault(
            "OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION",
            str(settings.MIDDLEWARE.index(OPERATIONAL_MIDDLEWARE) + 1),
        )
    DjangoInstrumentor().instrument(tracer_provider=provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    RedisInstrumentor().instrument(tracer_provider=provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    _instrumentors[:] = [
        DjangoInstrumentor(),
        PsycopgInstrumentor(),
        RedisInstrumentor(),
        CeleryInstrumentor(),
    ]
    correlation.tracing_install(inject, continue_in, current_ids)


def tracing_stop() -> None:
    """Undoes :func:`tracing_start` (tests start and stop it around one flow)."""
    for instrumentor in _instrumentors:
        instrumentor.uninstrument()
    _instrumentors.clear()
    correlation.tracing_uninstall()
