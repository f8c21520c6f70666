"""Courier devices, shipments and the telemetry they report.

Raw GPS points live in ``delivery_telemetry_point``, a table this app creates
with SQL of its own (time-partitioned on PostgreSQL, a plain table on SQLite);
the model over it is unmanaged and only reads. What the API serves comes from
the per-minute rollups and each device's last position, which are kept up to
date as points arrive. See docs/adr/0012-telemetry-storage.md.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from emporium.core.encryption import EncryptedJSONField, row_uuid_field
from emporium.core.models import TimeStampedModel
from emporium.orders.models import Order


class CourierDevice(TimeStampedModel):
    """A courier's phone or tracker. It authenticates with a token only staff can issue.

    Only the SHA-256 of the token is stored: the token is a random secret of
    256 bits, so a fast hash is enough to make a leaked table useless, and it
    lets authentication find the device with one indexed lookup.
    """

    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # What staff recorded about the device (model, IMEI, the SIM's phone number):
    # a JSON object sealed at rest, bound to the row through row_uuid.
    row_uuid = row_uuid_field()
    metadata: EncryptedJSONField = EncryptedJSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A revoked device is inactive and says when; an active one has no revocation time.
            models.CheckConstraint(
                condition=Q(is_active=True, revoked_at__isnull=True)
                | Q(is_active=False, revoked_at__isnull=False),
                name="courier_device_revocation_consistent",
            ),
        ]
        indexes = [models.Index(fields=["created_at", "id"], name="courier_device_created_idx")]

    def __str__(self) -> str:
        return f"device {self.pk} ({self.name})"


class ShipmentStatus(models.TextChoices):
    ASSIGNED = "assigned", "Assigned"
    IN_TRANSIT = "in_transit", "In transit"
    DELIVERED = "delivered", "Delivered"


class Shipment(TimeStampedModel):
    """An order on its way, carried by the courier whose device reports positions.

    One shipment per order for now (a unique constraint rather than a
    one-to-one field, so a later "returned, sent again" can relax it to a
    conditional constraint without changing the column).
    """

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="shipments")
    device = models.ForeignKey(CourierDevice, on_delete=models.PROTECT, related_name="shipments")
    status = models.CharField(
        max_length=20, choices=ShipmentStatus.choices, default=ShipmentStatus.ASSIGNED
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    in_transit_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["order"], name="shipment_one_per_order"),
            models.CheckConstraint(
                condition=Q(status__in=ShipmentStatus.values), name="shipment_status_known"
            ),
            models.CheckConstraint(
                condition=~Q(status=ShipmentStatus.DELIVERED) | Q(delivered_at__isnull=False),
                name="shipment_delivered_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["device", "status"], name="shipment_device_status_idx"),
            models.Index(fields=["created_at", "id"], name="shipment_created_id_idx"),
        ]

    def __str__(self) -> str:
        return f"shipment {self.pk} of order {self.order_id} ({self.status})"


class TelemetryPoint(models.Model):
    """One raw GPS point, read-only here: rows are written by COPY (see ``storage``).

    Unmanaged because Django cannot declare a partitioned table; migration
    0001 creates it with SQL for each database vendor.
    """

    pk = models.CompositePrimaryKey("device_id", "recorded_at")
    device_id = models.BigIntegerField()
    recorded_at = models.DateTimeField()
    latitude = models.FloatField()
    longitude = models.FloatField()
    speed = models.FloatField(null=True)  # metres per second
    heading = models.FloatField(null=True)  # degrees clockwise from north
    accuracy = models.FloatField(null=True)  # metres

    class Meta:
        managed = False
        db_table = "delivery_telemetry_point"

    def __str__(self) -> str:
        return f"device {self.device_id} at {self.recorded_at.isoformat()}"


class TelemetryMinute(models.Model):
    """What one device reported during one UTC minute, kept up to date as points arrive.

    Sums rather than averages, so a later batch adds to the minute without
    reading its points again; the average is ``latitude_sum / point_count``.
    """

    device = models.ForeignKey(CourierDevice, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()  # the minute's start, UTC
    point_count = models.PositiveIntegerField()
    latitude_sum = models.FloatField()
    longitude_sum = models.FloatField()
    first_recorded_at = models.DateTimeField()
    last_recorded_at = models.DateTimeField()
    distance_m = models.FloatField(default=0.0)
    max_speed = models.FloatField(null=True)

    class Meta:
        db_table = "delivery_telemetry_minute"
        constraints = [
            models.UniqueConstraint(fields=["device", "minute"], name="telemetry_minute_unique"),
            models.CheckConstraint(
                condition=Q(point_count__gt=0), name="telemetry_minute_count_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"device {self.device_id} minute {self.minute.isoformat()}"


class DevicePosition(models.Model):
    """The newest point a device has reported: the latest position. Ingestion
    locks this row, so one device's batches are stored one after the other."""

    device = models.OneToOneField(
        CourierDevice, primary_key=True, on_delete=models.CASCADE, related_name="position"
    )
    recorded_at = models.DateTimeField(null=True)
    latitude = models.FloatField(null=True)
    longitude = models.FloatField(null=True)
    speed = models.FloatField(null=True)
    heading = models.FloatField(null=True)
    accuracy = models.FloatField(null=True)

    class Meta:
        db_table = "delivery_device_position"

    def __str__(self) -> str:
        return f"device {self.device_id} position"
