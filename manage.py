#!/usr/bin/env python
"""Django's command-line utility.

It defaults to the production settings, like the servers and the Celery app:
they refuse to start without their secrets, so a command run on a server that
forgets DJANGO_SETTINGS_MODULE fails instead of using development settings on
real data. The Makefile's commands (`make run`, `make migrate`, `make seed`)
choose the embedded profile; elsewhere, say which profile you mean:

    DJANGO_SETTINGS_MODULE=config.settings.embedded .venv/bin/python manage.py shell
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
