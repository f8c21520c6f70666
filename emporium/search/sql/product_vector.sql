-- The product search vector (docs/search.md), kept current by triggers.
--
-- search_product_vector() weighs a product's words: name A, description B,
-- category name C. A trigger refreshes catalog_product.search_vector on every
-- write of those columns; another refreshes a category's products when it is
-- renamed, since the category name lives in another table. The column, its
-- GIN index and the trigram index on names are schema: search/0001 made them.

CREATE OR REPLACE FUNCTION search_product_vector(name text, description text, category_name text)
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('english', coalesce(name, '')), 'A')
        || setweight(to_tsvector('english', coalesce(description, '')), 'B')
        || setweight(to_tsvector('english', coalesce(category_name, '')), 'C')
$$;

CREATE OR REPLACE FUNCTION search_product_vector_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_vector := search_product_vector(
        NEW.name,
        NEW.description,
        (SELECT name FROM catalog_category WHERE id = NEW.category_id)
    );
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER search_product_vector_refresh
BEFORE INSERT OR UPDATE OF name, description, category_id ON catalog_product
FOR EACH ROW EXECUTE FUNCTION search_product_vector_refresh();

CREATE OR REPLACE FUNCTION search_category_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_product
       SET search_vector = search_product_vector(name, description, NEW.name)
     WHERE category_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER search_category_renamed
AFTER UPDATE OF name ON catalog_category
FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
EXECUTE FUNCTION search_category_renamed();

-- uninstall
DROP TRIGGER IF EXISTS search_category_renamed ON catalog_category;
DROP FUNCTION IF EXISTS search_category_renamed();
DROP TRIGGER IF EXISTS search_product_vector_refresh ON catalog_product;
DROP FUNCTION IF EXISTS search_product_vector_refresh();
DROP FUNCTION IF EXISTS search_product_vector(text, text, text);
