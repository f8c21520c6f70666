"""Shipping address and phone on orders, sealed at rest (emporium.core.encryption).

Every order gets a ``row_uuid`` first (nullable, filled row by row, then unique
and required): sealed values are bound to it, because a checkout seals them
before the database has allocated the order's id (docs/adr/0022).
"""

import uuid

from django.db import migrations, models

import emporium.core.encryption


def fill_row_uuids(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("UPDATE orders_order SET row_uuid = gen_random_uuid()")
        return
    Order = apps.get_model("orders", "Order")
    for pk in Order.objects.values_list("pk", flat=True).iterator():
        Order.objects.filter(pk=pk).update(row_uuid=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0004_order_place_function"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="row_uuid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(fill_row_uuids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="order",
            name="row_uuid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AddField(
            model_name="order",
            name="shipping_address",
            field=emporium.core.encryption.EncryptedTextField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="order",
            name="phone",
            field=emporium.core.encryption.EncryptedTextField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="order",
            name="phone_index",
            field=emporium.core.encryption.BlindIndexField(
                blank=True,
                db_index=True,
                editable=False,
                max_length=97,
                null=True,
                source="phone",
            ),
        ),
    ]
