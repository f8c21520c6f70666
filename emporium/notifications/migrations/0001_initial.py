"""The inbox takes over realtime's notification table, keeping its rows.

The table is renamed (realtime_notification -> notifications_notification);
realtime's 0003 drops the model from its own state without touching the
database. Rows written before have no dedup key: each gets "legacy:<id>".
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Cast, Concat


def legacy_dedup_keys(apps, schema_editor):  # type: ignore[no-untyped-def]
    Notification = apps.get_model("notifications", "Notification")
    Notification.objects.update(
        dedup_key=Concat(models.Value("legacy:"), Cast("id", models.CharField()))
    )


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("realtime", "0002_order_event_status_is_named_by_orders"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The model as realtime left it, on its table; nothing happens in the database.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Notification",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("kind", models.CharField(max_length=40)),
                        ("title", models.CharField(max_length=200)),
                        ("data", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "realtime_notification",
                        "ordering": ["id"],
                        "indexes": [
                            models.Index(fields=["user", "id"], name="notification_user_id_idx")
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.AlterModelTable(name="notification", table=None),
        migrations.RemoveIndex(model_name="notification", name="notification_user_id_idx"),
        migrations.RenameField(model_name="notification", old_name="user", new_name="recipient"),
        migrations.AlterField(
            model_name="notification",
            name="recipient",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="notifications",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="notification",
            name="body",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="notification",
            name="read_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="notification",
            name="dedup_key",
            field=models.CharField(default="", max_length=120),
            preserve_default=False,
        ),
        migrations.RunPython(legacy_dedup_keys, migrations.RunPython.noop),
        migrations.AlterModelOptions(name="notification", options={"ordering": ["-id"]}),
        migrations.AddConstraint(
            model_name="notification",
            constraint=models.UniqueConstraint(
                fields=("recipient", "dedup_key"), name="notification_recipient_dedup_uniq"
            ),
        ),
        migrations.AddIndex(
            model_name="notification",
            index=models.Index(fields=["recipient", "id"], name="notification_recipient_id_idx"),
        ),
        migrations.AddIndex(
            model_name="notification",
            index=models.Index(
                condition=models.Q(("read_at__isnull", True)),
                fields=["recipient", "id"],
                name="notification_unread_idx",
            ),
        ),
    ]
