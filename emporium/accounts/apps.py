from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "emporium.accounts"
    label = "accounts"
    verbose_name = "Accounts"
