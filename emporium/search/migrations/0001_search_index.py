"""The product search index, kept current by triggers (docs/search.md).

PostgreSQL: a weighted ``tsvector`` column on catalog_product (name A,
description B, category name C) with a GIN index, and a trigram GIN index on
the name for typo tolerance. SQLite: an FTS5 table keyed by product id.
Triggers keep both current on every product write and on a category rename,
since the category name lives in another table.
"""

from django.db import migrations

POSTGRES_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "ALTER TABLE catalog_product ADD COLUMN search_vector tsvector",
    """
    CREATE FUNCTION search_product_vector(name text, description text, category_name text)
    RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT setweight(to_tsvector('english', coalesce(name, '')), 'A')
            || setweight(to_tsvector('english', coalesce(description, '')), 'B')
            || setweight(to_tsvector('english', coalesce(category_name, '')), 'C')
    $$
    """,
    """
    CREATE FUNCTION search_product_vector_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.search_vector := search_product_vector(
            NEW.name,
            NEW.description,
            (SELECT name FROM catalog_category WHERE id = NEW.category_id)
        );
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER search_product_vector_refresh
    BEFORE INSERT OR UPDATE OF name, description, category_id ON catalog_product
    FOR EACH ROW EXECUTE FUNCTION search_product_vector_refresh()
    """,
    """
    CREATE FUNCTION search_category_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE catalog_product
           SET search_vector = search_product_vector(name, description, NEW.name)
         WHERE category_id = NEW.id;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER search_category_renamed
    AFTER UPDATE OF name ON catalog_category
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION search_category_renamed()
    """,
    """
    UPDATE catalog_product AS product
       SET search_vector = search_product_vector(product.name, product.description, category.name)
      FROM catalog_category AS category
     WHERE category.id = product.category_id
    """,
    "CREATE INDEX search_product_vector_idx ON catalog_product USING gin (search_vector)",
    "CREATE INDEX search_product_name_trgm_idx ON catalog_product USING gin (name gin_trgm_ops)",
]

POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS search_product_name_trgm_idx",
    "DROP INDEX IF EXISTS search_product_vector_idx",
    "DROP TRIGGER IF EXISTS search_category_renamed ON catalog_category",
    "DROP FUNCTION IF EXISTS search_category_renamed()",
    "DROP TRIGGER IF EXISTS search_product_vector_refresh ON catalog_product",
    "DROP FUNCTION IF EXISTS search_product_vector_refresh()",
    "DROP FUNCTION IF EXISTS search_product_vector(text, text, text)",
    "ALTER TABLE catalog_product DROP COLUMN IF EXISTS search_vector",
]

_SQLITE_INSERT = """
    INSERT INTO search_product_fts (rowid, name, description, category_name)
    VALUES (
        new.id, new.name, new.description,
        (SELECT name FROM catalog_category WHERE id = new.category_id)
    );
"""

SQLITE_FORWARD = [
    """
    CREATE VIRTUAL TABLE search_product_fts USING fts5(
        name, description, category_name,
        tokenize = 'porter unicode61 remove_diacritics 2'
    )
    """,
    f"""
    CREATE TRIGGER search_product_inserted AFTER INSERT ON catalog_product BEGIN
        {_SQLITE_INSERT}
    END
    """,
    f"""
    CREATE TRIGGER search_product_updated
    AFTER UPDATE OF name, description, category_id ON catalog_product BEGIN
        DELETE FROM search_product_fts WHERE rowid = old.id;
        {_SQLITE_INSERT}
    END
    """,
    """
    CREATE TRIGGER search_product_deleted AFTER DELETE ON catalog_product BEGIN
        DELETE FROM search_product_fts WHERE rowid = old.id;
    END
    """,
    """
    CREATE TRIGGER search_category_renamed AFTER UPDATE OF name ON catalog_category
    WHEN old.name IS NOT new.name BEGIN
        UPDATE search_product_fts SET category_name = new.name
         WHERE rowid IN (SELECT id FROM catalog_product WHERE category_id = new.id);
    END
    """,
    """
    INSERT INTO search_product_fts (rowid, name, description, category_name)
    SELECT product.id, product.name, product.description, category.name
      FROM catalog_product AS product
      JOIN catalog_category AS category ON category.id = product.category_id
    """,
]

SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS search_category_renamed",
    "DROP TRIGGER IF EXISTS search_product_deleted",
    "DROP TRIGGER IF EXISTS search_product_updated",
    "DROP TRIGGER IF EXISTS search_product_inserted",
    "DROP TABLE IF EXISTS search_product_fts",
]


def _run(schema_editor, statements_by_vendor):
    statements = statements_by_vendor.get(schema_editor.connection.vendor)
    if statements is None:
        raise RuntimeError(f"Search has no index for {schema_editor.connection.vendor}.")
    for statement in statements:
        schema_editor.execute(statement)


def forward(apps, schema_editor):
    _run(schema_editor, {"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD})


def backward(apps, schema_editor):
    _run(schema_editor, {"postgresql": POSTGRES_BACKWARD, "sqlite": SQLITE_BACKWARD})


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
