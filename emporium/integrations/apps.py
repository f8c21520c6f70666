from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "emporium.integrations"
    label = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from django.conf import settings

        from emporium.integrations.events import after_event_commit
        from emporium.integrations.relay import outbox_relay_pending

        if settings.EMPORIUM_RELAY_INLINE:
            # No broker and no relay daemon: relay right after the commit, in-process.
            after_event_commit(outbox_relay_pending)
