"""emporium_product_rows(ids): products as the catalog shows them, written by PostgreSQL.

The lean read path (docs/adr/0020-lean-gateway-and-rendered-rows.md) asks for
a page's ids in one statement that PostgreSQL plans for the request's filters,
and has this function write the rows: as PL/pgSQL, its query is prepared once
per connection and kept as a generic plan, so the long expression below is not
planned again for every page (that planning cost more than running it).

Each row, in the order of ``ids`` (missing ids are skipped), holds the product's
JSON as ``serializers.product_row_representation`` and DRF's JSONRenderer write
it, in three parts: the text before the ``attributes`` value, the attributes as
stored (free-form JSON: only Python writes its numbers as Python does, so the
caller parses and writes them), and the text after. Then the columns a cursor
is made of: price, name, created_at (in microseconds since 1970: a page needs
only its first and last row's as a datetime) and id.

- to_json() escapes strings as json.dumps(ensure_ascii=False) does; U+2028 and
  U+2029 are escaped by the caller, as JSONRenderer does.
- Times are written in UTC ("Z"), with microseconds only when there are some,
  as datetime.isoformat() does; the caller uses this only when UTC is current.
- rating_average is total / count to the cent, half to even (Decimal.quantize).

A change to the representation must replace this function in a new migration;
emporium/catalog/tests/test_lean_reads.py compares its bytes with DRF's.
"""

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION emporium_product_rows(p_ids bigint[])
RETURNS TABLE (head text, attributes text, tail text,
               price numeric, name text, created_at_us bigint, id bigint)
LANGUAGE plpgsql STABLE
-- Its plan depends on nothing the ids could change; planned for each call's ids,
-- the long expression cost more than the query (docs/db_optimization.md).
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT
        '{"id":' || p.id
        || ',"sku":' || to_json(p.sku)
        || ',"name":' || to_json(p.name)
        || ',"description":' || to_json(p.description)
        || ',"price":"' || p.price
        || '","stock_quantity":' || p.stock_quantity
        || ',"in_stock":' || (p.stock_quantity > 0)
        || ',"category":' || p.category_id
        || ',"category_name":' || to_json(c.name)
        || ',"attributes":',
        p.attributes::text,
        ',"rating_average":'
        || CASE WHEN p.review_count = 0 THEN 'null'
           ELSE '"' || (r.cents / 100) || '.' || lpad((r.cents % 100)::text, 2, '0') || '"' END
        || ',"review_count":' || p.review_count
        || ',"created_at":"' || to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_part('microseconds', p.created_at)::bigint % 1000000 = 0 THEN ''
           ELSE to_char(p.created_at AT TIME ZONE 'UTC', '.US') END
        || 'Z","updated_at":"' || to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_part('microseconds', p.updated_at)::bigint % 1000000 = 0 THEN ''
           ELSE to_char(p.updated_at AT TIME ZONE 'UTC', '.US') END
        || 'Z"}',
        p.price, p.name::text, (extract(epoch FROM p.created_at) * 1000000)::bigint, p.id
    FROM unnest(p_ids) WITH ORDINALITY AS k(id, n)
    JOIN catalog_product AS p ON p.id = k.id
    JOIN catalog_category AS c ON c.id = p.category_id
    CROSS JOIN LATERAL (
        SELECT q.cents + CASE
            WHEN 2 * q.remainder > p.review_count
              OR (2 * q.remainder = p.review_count AND q.cents % 2 = 1) THEN 1
            ELSE 0 END AS cents
        FROM (SELECT (p.rating_total * 100) / NULLIF(p.review_count, 0) AS cents,
                     (p.rating_total * 100) % NULLIF(p.review_count, 0) AS remainder) AS q
    ) AS r
    ORDER BY k.n;
END
$fn$;
"""

DROP = "DROP FUNCTION IF EXISTS emporium_product_rows(bigint[]);"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)  # the result columns may have changed
        schema_editor.execute(CREATE, params=None)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_leaf_category_sort_indexes")]

    operations = [migrations.RunPython(create, drop)]
