-- Generated from emporium/catalog/representation.py by `python manage.py catalog_sql`;
-- do not edit: change PRODUCT_FIELDS and run the command again.
--
-- emporium_product_rows(ids): each product of ids (in their order; missing ids are
-- skipped) as the catalog shows it, written by PostgreSQL: its JSON in parts cut at
-- each free-form object, then the values a cursor is made of. As PL/pgSQL, its query
-- is prepared once per connection and kept as a generic plan, so this long expression
-- is not planned again for every page (that planning cost more than running it).
-- Times are written in UTC; the caller uses the function only when UTC is current.

-- The result columns follow the fields, and CREATE OR REPLACE cannot change them.
DROP FUNCTION IF EXISTS emporium_product_rows(bigint[]);

CREATE FUNCTION emporium_product_rows(p_ids bigint[])
RETURNS TABLE (
    part_0 text,
    attributes text,
    part_1 text,
    cursor_price numeric,
    cursor_id bigint,
    cursor_name text,
    cursor_created_at bigint
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT
        '{"id":'
        || p.id::text
        || ',"sku":'
        || to_json(p.sku)::text
        || ',"name":'
        || to_json(p.name)::text
        || ',"description":'
        || to_json(p.description)::text
        || ',"price":"'
        || p.price::text
        || '","stock_quantity":'
        || p.stock_quantity::text
        || ',"in_stock":'
        || (p.stock_quantity > 0)::text
        || ',"category":'
        || p.category_id::text
        || ',"category_name":'
        || to_json(c.name)::text
        || ',"attributes":',
        p.attributes::text,
        ',"rating_average":'
        || CASE WHEN p.review_count = 0 THEN 'null' ELSE '"' || (r_rating_average.cents / 100) || '.' || lpad((r_rating_average.cents % 100)::text, 2, '0') || '"' END
        || ',"review_count":'
        || p.review_count::text
        || ',"created_at":"'
        || to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_part('microseconds', p.created_at)::bigint % 1000000 = 0 THEN '' ELSE to_char(p.created_at AT TIME ZONE 'UTC', '.US') END
        || 'Z","updated_at":"'
        || to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_part('microseconds', p.updated_at)::bigint % 1000000 = 0 THEN '' ELSE to_char(p.updated_at AT TIME ZONE 'UTC', '.US') END
        || 'Z"}',
        p.price,
        p.id::bigint,
        p.name::text,
        (extract(epoch FROM p.created_at) * 1000000)::bigint
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
    ) AS r_rating_average
    ORDER BY k.n;
END
$fn$;

-- uninstall
DROP FUNCTION IF EXISTS emporium_product_rows(bigint[]);
