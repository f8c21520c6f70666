from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "emporium.observability"
    label = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        # health registers the system check of READINESS_REQUIRED.
        from emporium.observability import health, instrumentation, metrics  # noqa: F401
        from emporium.observability.task_context import task_context_connect
        from emporium.observability.task_metrics import task_metrics_connect
        from emporium.observability.tracing import tracing_configure

        if metrics.metrics_enabled():  # off: no statement wrapper, no receiver
            instrumentation.instrumentation_install()

        task_context_connect()
        # Task outcomes and run times, beat's sends, /metrics for worker and beat: a
        # worker and beat set up Django before their worker_init and beat_init.
        task_metrics_connect()
        # Web, worker and relay processes all set up Django, so all pass here.
        tracing_configure()
