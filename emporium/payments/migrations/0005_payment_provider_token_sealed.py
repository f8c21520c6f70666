"""The provider's card-vault token, sealed at rest (emporium.core.encryption).

Payments get a ``row_uuid`` (filled row by row, then unique and required),
the column becomes text, and every token already stored is sealed in place.
Going back opens them again.
"""

import uuid

from django.db import migrations, models

import emporium.core.encryption

TABLE = "payments_payment"
COLUMN = "provider_token"


def fill_row_uuids(apps, schema_editor):
    Payment = apps.get_model("payments", "Payment")
    for pk in Payment.objects.values_list("pk", flat=True).iterator():
        Payment.objects.filter(pk=pk).update(row_uuid=uuid.uuid4())


def _rewrite(schema_editor, change):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT id, row_uuid, {COLUMN} FROM {TABLE} WHERE {COLUMN} IS NOT NULL")  # noqa: S608 (constant names)
        for pk, row_id, value in cursor.fetchall():
            cursor.execute(
                f"UPDATE {TABLE} SET {COLUMN} = %s WHERE id = %s",  # noqa: S608 (constant names)
                [change(value, str(row_id)), pk],
            )


def seal_tokens(apps, schema_editor):
    _rewrite(
        schema_editor,
        lambda value, row_id: emporium.core.encryption.seal(
            value, table=TABLE, column=COLUMN, row_id=row_id
        ),
    )


def open_tokens(apps, schema_editor):
    _rewrite(
        schema_editor,
        lambda value, row_id: emporium.core.encryption.unseal(
            value, table=TABLE, column=COLUMN, row_id=row_id
        ),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0004_payment_discrepancy"),
    ]

    operations = [
        migrations.AddField(
            model_name="payment",
            name="row_uuid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(fill_row_uuids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="payment",
            name="row_uuid",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name="payment",
            name="provider_token",
            field=emporium.core.encryption.EncryptedTextField(blank=True, default=""),
        ),
        migrations.RunPython(seal_tokens, open_tokens),
    ]
