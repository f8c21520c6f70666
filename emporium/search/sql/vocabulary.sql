-- The words of product names, for spelling correction
-- (docs/adr/0018-search-vocabulary.md).
--
-- The search_vocabulary table (search/0002) holds each distinct word of the
-- product names (the 'simple' parser's tokens, lowercased, not stemmed), its
-- English lexeme and how many products have it in their name. Row triggers on
-- catalog_product keep the counts exact on insert, rename and delete; a word
-- whose count reaches zero is deleted at once, so a renamed product's old
-- words stop being suggested in the same transaction.

-- The words a name contributes: the tokens full text would see, unstemmed.
CREATE OR REPLACE FUNCTION search_name_words(name text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(lexeme ORDER BY lexeme), '{}')
      FROM unnest(to_tsvector('simple', coalesce(name, '')))
$$;

CREATE OR REPLACE FUNCTION search_word_lexeme(word text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lexeme FROM unnest(to_tsvector('english', word)) LIMIT 1
$$;

-- Gained words are counted up and lost ones down, each set in word order
-- so two writers lock shared rows in the same order; a word whose count
-- reaches zero is deleted (re-checked on the row's latest version, so a
-- concurrent writer who counted it up again keeps it).
CREATE OR REPLACE FUNCTION search_vocabulary_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_words text[] := '{}';
    new_words text[] := '{}';
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_words := search_name_words(OLD.name);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_words := search_name_words(NEW.name);
    END IF;
    INSERT INTO search_vocabulary AS v (word, lexeme, documents)
    SELECT gained, search_word_lexeme(gained), 1
      FROM unnest(new_words) AS gained
     WHERE gained <> ALL (old_words)
     ORDER BY gained
    ON CONFLICT (word) DO UPDATE SET documents = v.documents + 1;
    UPDATE search_vocabulary SET documents = documents - 1
     WHERE word IN (SELECT unnest(old_words) EXCEPT SELECT unnest(new_words));
    DELETE FROM search_vocabulary
     WHERE word IN (SELECT unnest(old_words) EXCEPT SELECT unnest(new_words))
       AND documents = 0;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER search_vocabulary_inserted AFTER INSERT ON catalog_product
FOR EACH ROW EXECUTE FUNCTION search_vocabulary_count();

CREATE OR REPLACE TRIGGER search_vocabulary_renamed AFTER UPDATE OF name ON catalog_product
FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
EXECUTE FUNCTION search_vocabulary_count();

CREATE OR REPLACE TRIGGER search_vocabulary_deleted AFTER DELETE ON catalog_product
FOR EACH ROW EXECUTE FUNCTION search_vocabulary_count();

-- TRUNCATE fires no row triggers (Django's test flush uses it).
CREATE OR REPLACE FUNCTION search_vocabulary_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE search_vocabulary;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER search_vocabulary_truncated AFTER TRUNCATE ON catalog_product
FOR EACH STATEMENT EXECUTE FUNCTION search_vocabulary_truncate();

-- Recounts everything: after a bulk load that ran with the triggers
-- disabled (bench/search.py does), and once when search/0002 made the table.
CREATE OR REPLACE FUNCTION search_vocabulary_rebuild() RETURNS void LANGUAGE sql AS $$
    DELETE FROM search_vocabulary;
    INSERT INTO search_vocabulary (word, lexeme, documents)
    SELECT word, search_word_lexeme(word), count(*)
      FROM catalog_product, unnest(search_name_words(name)) AS word
     GROUP BY word;
$$;

-- uninstall
DROP TRIGGER IF EXISTS search_vocabulary_truncated ON catalog_product;
DROP TRIGGER IF EXISTS search_vocabulary_deleted ON catalog_product;
DROP TRIGGER IF EXISTS search_vocabulary_renamed ON catalog_product;
DROP TRIGGER IF EXISTS search_vocabulary_inserted ON catalog_product;
DROP FUNCTION IF EXISTS search_vocabulary_rebuild();
DROP FUNCTION IF EXISTS search_vocabulary_truncate();
DROP FUNCTION IF EXISTS search_vocabulary_count();
DROP FUNCTION IF EXISTS search_word_lexeme(text);
DROP FUNCTION IF EXISTS search_name_words(text);
