from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "emporium.integrations.webhooks"
    label = "webhooks"
    verbose_name = "Outgoing webhooks"

    def ready(self) -> None:
        from django.conf import settings

        from emporium.integrations.events import after_event_commit

        # Registers the outbox handlers that turn domain events into deliveries.
        from emporium.integrations.webhooks import tasks

        if settings.CELERY_TASK_ALWAYS_EAGER:
            # No broker and no beat: deliveries waiting for a retry are sent when
            # the next event is relayed in-process.
            after_event_commit(tasks.deliveries_dispatch_due_inline)
