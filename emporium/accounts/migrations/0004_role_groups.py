"""Creates the role groups with their model permissions (see emporium/accounts/roles.py).

The table is a copy of ``ROLE_PERMISSIONS`` as it stood when this migration
was written, so the migration does the same thing on every installation; later
changes to the table reach the groups through ``roles_sync`` after ``migrate``.
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from emporium.accounts.roles import ALL_PERMISSIONS, permissions_create_all, roles_sync

ROLE_PERMISSIONS = {
    "customer": frozenset(),
    "support": frozenset(
        {
            "accounts.view_user",
            "orders.view_order",
            "orders.view_orderitem",
            "orders.view_orderstatuschange",
            "payments.view_payment",
            "delivery.view_shipment",
        }
    ),
    "catalog_manager": frozenset(
        f"catalog.{verb}_{model}"
        for verb in ("view", "add", "change", "delete")
        for model in ("product", "category")
    ),
    "admin": ALL_PERMISSIONS,
}


def create_role_groups(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    permissions_create_all(apps=apps)
    roles_sync(apps=apps, table=ROLE_PERMISSIONS, strict=True)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_user_username_key"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("catalog", "0003_product_rows_function"),
        ("orders", "0004_order_place_function"),
        ("payments", "0003_payment_refund_reference"),
        ("delivery", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_role_groups, migrations.RunPython.noop)]
