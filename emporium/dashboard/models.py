from __future__ import annotations

from django.db import models

VIEW_DASHBOARD = "dashboard.view_dashboard"
"""The permission that opens the live operations page and its WebSocket."""


class Dashboard(models.Model):
    """No table: the holder of the dashboard's permission, which the roles grant.

    The page shows figures from every app, so no existing model's permission
    fits it; ``managed = False`` keeps the row-less model out of the database.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_dashboard", "Can view the live operations dashboard")]

    def __str__(self) -> str:
        return "dashboard"
