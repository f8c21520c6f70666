from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from emporium.accounts.models import User
from emporium.accounts.roles import Role, roles_sync, user_role_assign


class Command(BaseCommand):
    help = "Makes a role the account's only role (customer, support, catalog_manager, admin)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", choices=[role.value for role in Role])

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username__iexact=options["username"]).first()
        if user is None:
            raise CommandError(f"no account is called {options['username']!r}")
        roles_sync()  # the groups match the role table before anyone joins one
        user_role_assign(user=user, role=Role(options["role"]))
        self.stdout.write(f"{user.username} is now {options['role']}.")
