"""Names of the fan-out groups. One place, so publishers and consumers agree."""

from __future__ import annotations

# Every staff dashboard; the dashboard app sends its figures here.
DASHBOARD = "dashboard"
# Every connected customer's notification stream (staff broadcasts).
BROADCAST = "broadcast"
# Revocations of users' sockets ({"user_id": 7}); every server process listens.
REVOCATIONS = "revocations"


def user_orders(user_id: int) -> str:
    return f"user.{user_id}.orders"


def user_notifications(user_id: int) -> str:
    return f"user.{user_id}.notifications"


def shipment(shipment_id: int) -> str:
    return f"shipment.{shipment_id}"
