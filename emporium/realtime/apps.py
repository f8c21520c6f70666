from django.apps import AppConfig

from emporium.accounts.revocation import revocation_listener_register
from emporium.realtime import user_sockets_revoke


class RealtimeConfig(AppConfig):
    name = "emporium.realtime"
    label = "realtime"
    verbose_name = "Real time"

    def ready(self) -> None:
        # A revoked user's sockets close in every server process.
        revocation_listener_register(user_sockets_revoke)
