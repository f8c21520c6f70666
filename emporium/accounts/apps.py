from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "emporium.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from emporium.accounts import tokens

        tokens.install()  # every simplejwt token is signed and read by the key ring
        from emporium.accounts import access

        access.signals_connect()  # account changes forget the cached authentication state
        from emporium.accounts.roles import roles_sync_after_migrate

        post_migrate.connect(roles_sync_after_migrate, dispatch_uid="emporium.accounts.roles")
