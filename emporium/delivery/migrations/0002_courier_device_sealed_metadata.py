"""Device metadata, a JSON object sealed at rest (emporium.core.encryption).

Devices get a ``row_uuid`` first (filled row by row, then unique and required):
sealed values are bound to it.
"""

import uuid

from django.db import migrations, models

import emporium.core.encryption


def fill_row_uuids(apps, schema_editor):
    CourierDevice = apps.get_model("delivery", "CourierDevice")
    for pk in CourierDevice.objects.values_list("pk", flat=True).iterator():
        CourierDevice.objects.filter(pk=pk).update(row_uuid=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("delivery", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="courierdevice",
            name="row_uuid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(fill_row_uuids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="courierdevice",
            name="row_uuid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AddField(
            model_name="courierdevice",
            name="metadata",
            field=emporium.core.encryption.EncryptedJSONField(blank=True, null=True),
        ),
    ]
