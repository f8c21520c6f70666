"""The notification model now belongs to the notifications app, which renamed its table."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("realtime", "0002_order_event_status_is_named_by_orders"),
        ("notifications", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Notification")],
            database_operations=[],
        ),
    ]
