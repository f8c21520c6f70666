"""Three indexes that no query needs, each written on every insert.

* ``catalog_product_category_id_35bf920b`` (the foreign key's own index): the
  composite ``product_cat_*`` indexes start with ``category_id`` and serve
  every look-up by category.
* ``catalog_product_sku_5c54c070_like`` (``varchar_pattern_ops``, which
  PostgreSQL gets for a unique ``CharField``): nothing looks SKUs up by
  prefix through it; equality, ``IN`` and ``ON CONFLICT (sku)`` use the
  unique index. ``sku`` becomes unique through a ``UniqueConstraint`` of the
  same name as the constraint ``unique=True`` made, so the unique index stays
  as it is.
* ``catalog_productimporterror_product_import_id_14ee977f``: the foreign key's
  own index, covered by ``product_import_error_row_idx``.

The state changes as AlterField/AddConstraint would make it; the database
change is only the three DROP INDEX. Django's own AlterField would remake
catalog_product on SQLite (the embedded profile), which fails on the search
app's triggers there, and on PostgreSQL would drop and rebuild the SKU's
unique index.
"""

import django.db.models.deletion
from django.db import migrations, models

FOREIGN_KEY_INDEXES = {
    "catalog_product_category_id_35bf920b": ("catalog_product", "category_id"),
    "catalog_productimporterror_product_import_id_14ee977f": (
        "catalog_productimporterror",
        "product_import_id",
    ),
}
SKU_LIKE_INDEX = "catalog_product_sku_5c54c070_like"  # PostgreSQL only


def drop_indexes(apps, schema_editor):
    quote = schema_editor.quote_name
    for name in [*FOREIGN_KEY_INDEXES, SKU_LIKE_INDEX]:
        schema_editor.execute(f"DROP INDEX IF EXISTS {quote(name)}")


def create_indexes(apps, schema_editor):
    quote = schema_editor.quote_name
    for name, (table, column) in FOREIGN_KEY_INDEXES.items():
        schema_editor.execute(f"CREATE INDEX {quote(name)} ON {quote(table)} ({quote(column)})")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX {quote(SKU_LIKE_INDEX)} ON catalog_product (sku varchar_pattern_ops)"
        )


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0005_product_imports'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='product',
                    name='category',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='products', to='catalog.category'),
                ),
                migrations.AlterField(
                    model_name='product',
                    name='sku',
                    field=models.CharField(max_length=64, verbose_name='SKU'),
                ),
                migrations.AlterField(
                    model_name='productimporterror',
                    name='product_import',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='errors', to='catalog.productimport'),
                ),
                migrations.AddConstraint(
                    model_name='product',
                    constraint=models.UniqueConstraint(fields=('sku',), name='catalog_product_sku_key'),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        ),
    ]
