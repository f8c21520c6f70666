"""Installs search/sql/vocabulary.sql as written when this migration was made.

Written by manage.py sqlmigrations: the SQL below is a snapshot of the file
(and of its version before), kept so that history replays exactly. Edit the
file and run the command again; never edit this migration.
"""

from django.db import migrations

from emporium.core.db.sql import InstallSQL

VOCABULARY = r"""-- The words of product names, for spelling correction
-- (docs/adr/0018-search-vocabulary.md).
--
-- The search_vocabulary table (search/0002) holds each distinct word of the
-- product names (the 'simple' parser's tokens, lowercased, not stemmed), its
-- English lexeme and how many products have it in their name. Statement
-- triggers on catalog_product keep the counts exact on insert, rename and
-- delete: each reads the statement's transition tables, counts the words
-- gained and lost by the whole statement, and applies one change per word. A
-- word whose count reaches zero is deleted at once, so a renamed product's
-- old words stop being suggested in the same transaction.

-- The words a name contributes: the tokens full text would see, unstemmed,
-- each once. A set-returning SQL function, so a query that reads it in FROM
-- gets its body inlined instead of calling a function per name.
CREATE OR REPLACE FUNCTION search_name_word_set(name text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lexeme FROM unnest(to_tsvector('simple', coalesce(name, '')))
$$;

CREATE OR REPLACE FUNCTION search_word_lexeme(word text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lexeme FROM unnest(to_tsvector('english', word)) LIMIT 1
$$;

-- Counts the words of the names in before_names down and those in
-- after_names up, pairwise: one pair per product, NULL for a product that was
-- not there before or is not there after; a pair with the same name changes
-- nothing. The words are counted for the whole statement first, then each
-- word's row changes once. The first statement locks every row in word order
-- (a new word is inserted, a gained word counted up, a lost word only locked:
-- DO UPDATE locks the rows its WHERE skips), so two writers meet on shared
-- words in the same order and cannot deadlock here. Lost words are counted
-- down next and those at zero deleted; their rows are this transaction's
-- already, so no other writer counts them up in between. A count never goes
-- below zero, and a lost word missing from the table (as after a load that
-- ran with the triggers disabled) is ignored.
CREATE OR REPLACE FUNCTION search_vocabulary_count(before_names text[], after_names text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    words text[];
    changes integer[];
BEGIN
    SELECT array_agg(word ORDER BY word), array_agg(change ORDER BY word)
      INTO words, changes
      FROM (
        SELECT word, sum(sign)::integer AS change
          FROM unnest(before_names, after_names) AS n(before_name, after_name),
               LATERAL (
                   SELECT word, 1 FROM search_name_word_set(n.after_name) AS word
                   UNION ALL
                   SELECT word, -1 FROM search_name_word_set(n.before_name) AS word
               ) AS w(word, sign)
         WHERE n.before_name IS DISTINCT FROM n.after_name
         GROUP BY word
        HAVING sum(sign) <> 0
      ) AS counted;
    IF words IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO search_vocabulary AS v (word, lexeme, documents)
    SELECT c.word, search_word_lexeme(c.word), greatest(c.change, 0)
      FROM unnest(words, changes) AS c(word, change)
     ORDER BY c.word
    ON CONFLICT (word) DO UPDATE SET documents = v.documents + EXCLUDED.documents
     WHERE EXCLUDED.documents > 0;
    UPDATE search_vocabulary AS v SET documents = greatest(v.documents + c.change, 0)
      FROM unnest(words, changes) AS c(word, change)
     WHERE v.word = c.word AND c.change < 0;
    DELETE FROM search_vocabulary AS v
     USING unnest(words, changes) AS c(word, change)
     WHERE v.word = c.word AND c.change < 0 AND v.documents = 0;
END
$$;

-- One trigger per kind of statement, each naming the names it changed.
CREATE OR REPLACE FUNCTION search_vocabulary_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM search_vocabulary_count('{}', ARRAY(SELECT name FROM inserted_products));
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION search_vocabulary_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    before_names text[];
    after_names text[];
BEGIN
    -- A full join, so a changed id counts as a delete and an insert.
    SELECT array_agg(o.name), array_agg(n.name)
      INTO before_names, after_names
      FROM products_before AS o FULL JOIN products_after AS n ON n.id = o.id
     WHERE o.name IS DISTINCT FROM n.name;
    IF before_names IS NOT NULL THEN
        PERFORM search_vocabulary_count(before_names, after_names);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION search_vocabulary_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM search_vocabulary_count(ARRAY(SELECT name FROM deleted_products), '{}');
    RETURN NULL;
END
$$;

-- Transition tables rule out a column list (UPDATE OF name): every update
-- statement fires the trigger, which skips at once the products whose name
-- stayed.
CREATE OR REPLACE TRIGGER search_vocabulary_inserted AFTER INSERT ON catalog_product
REFERENCING NEW TABLE AS inserted_products
FOR EACH STATEMENT EXECUTE FUNCTION search_vocabulary_inserted();

CREATE OR REPLACE TRIGGER search_vocabulary_updated AFTER UPDATE ON catalog_product
REFERENCING OLD TABLE AS products_before NEW TABLE AS products_after
FOR EACH STATEMENT EXECUTE FUNCTION search_vocabulary_updated();

CREATE OR REPLACE TRIGGER search_vocabulary_deleted AFTER DELETE ON catalog_product
REFERENCING OLD TABLE AS deleted_products
FOR EACH STATEMENT EXECUTE FUNCTION search_vocabulary_deleted();

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
      FROM catalog_product, search_name_word_set(name) AS word
     GROUP BY word;
$$;

-- uninstall
DROP TRIGGER IF EXISTS search_vocabulary_truncated ON catalog_product;
DROP TRIGGER IF EXISTS search_vocabulary_deleted ON catalog_product;
DROP TRIGGER IF EXISTS search_vocabulary_updated ON catalog_product;
DROP TRIGGER IF EXISTS search_vocabulary_inserted ON catalog_product;
DROP FUNCTION IF EXISTS search_vocabulary_rebuild();
DROP FUNCTION IF EXISTS search_vocabulary_truncate();
DROP FUNCTION IF EXISTS search_vocabulary_deleted();
DROP FUNCTION IF EXISTS search_vocabulary_updated();
DROP FUNCTION IF EXISTS search_vocabulary_inserted();
DROP FUNCTION IF EXISTS search_vocabulary_count(text[], text[]);
DROP FUNCTION IF EXISTS search_word_lexeme(text);
DROP FUNCTION IF EXISTS search_name_word_set(text);
"""

VOCABULARY_PREVIOUS = r"""-- The words of product names, for spelling correction
-- (docs/adr/0018-search-vocabulary.md).
--
-- The search_vocabulary table (search/0002) holds each distinct word of the
-- product names (the 'simple' parser's tokens, lowercased, not stemmed), its
-- English lexeme and how many products have it in their name. Statement
-- triggers on catalog_product keep the counts exact on insert, rename and
-- delete: each reads the statement's transition tables, counts the words
-- gained and lost by the whole statement, and applies one change per word. A
-- word whose count reaches zero is deleted at once, so a renamed product's
-- old words stop being suggested in the same transaction.

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

-- Counts the words of the names in before_names down and those in
-- after_names up, pairwise: one pair per product, NULL for a product that was
-- not there before or is not there after; a pair with the same name changes
-- nothing. The words are counted for the whole statement first, then each
-- word's row changes once. The first statement locks every row in word order
-- (a new word is inserted, a gained word counted up, a lost word only locked:
-- DO UPDATE locks the rows its WHERE skips), so two writers meet on shared
-- words in the same order and cannot deadlock here. Lost words are counted
-- down next and those at zero deleted; their rows are this transaction's
-- already, so no other writer counts them up in between. A count never goes
-- below zero, and a lost word missing from the table (as after a load that
-- ran with the triggers disabled) is ignored.
CREATE OR REPLACE FUNCTION search_vocabulary_count(before_names text[], after_names text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    words text[];
    changes integer[];
BEGIN
    SELECT array_agg(word ORDER BY word), array_agg(change ORDER BY word)
      INTO words, changes
      FROM (
        SELECT word, sum(sign)::integer AS change
          FROM unnest(before_names, after_names) AS n(before_name, after_name),
               LATERAL (
                   SELECT unnest(search_name_words(n.after_name)), 1
                   UNION ALL
                   SELECT unnest(search_name_words(n.before_name)), -1
               ) AS w(word, sign)
         WHERE n.before_name IS DISTINCT FROM n.after_name
         GROUP BY word
        HAVING sum(sign) <> 0
      ) AS counted;
    IF words IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO search_vocabulary AS v (word, lexeme, documents)
    SELECT c.word, search_word_lexeme(c.word), greatest(c.change, 0)
      FROM unnest(words, changes) AS c(word, change)
     ORDER BY c.word
    ON CONFLICT (word) DO UPDATE SET documents = v.documents + EXCLUDED.documents
     WHERE EXCLUDED.documents > 0;
    UPDATE search_vocabulary AS v SET documents = greatest(v.documents + c.change, 0)
      FROM unnest(words, changes) AS c(word, change)
     WHERE v.word = c.word AND c.change < 0;
    DELETE FROM search_vocabulary AS v
     USING unnest(words, changes) AS c(word, change)
     WHERE v.word = c.word AND c.change < 0 AND v.documents = 0;
END
$$;

-- One trigger per kind of statement, each naming the names it changed.
CREATE OR REPLACE FUNCTION search_vocabulary_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM search_vocabulary_count('{}', ARRAY(SELECT name FROM inserted_products));
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION search_vocabulary_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    before_names text[];
    after_names text[];
BEGIN
    -- A full join, so a changed id counts as a delete and an insert.
    SELECT array_agg(o.name), array_agg(n.name)
      INTO before_names, after_names
      FROM products_before AS o FULL JOIN products_after AS n ON n.id = o.id
     WHERE o.name IS DISTINCT FROM n.name;
    IF before_names IS NOT NULL THEN
        PERFORM search_vocabulary_count(before_names, after_names);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION search_vocabulary_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM search_vocabulary_count(ARRAY(SELECT name FROM deleted_products), '{}');
    RETURN NULL;
END
$$;

-- Transition tables rule out a column list (UPDATE OF name): every update
-- statement fires the trigger, which skips at once the products whose name
-- stayed.
CREATE OR REPLACE TRIGGER search_vocabulary_inserted AFTER INSERT ON catalog_product
REFERENCING NEW TABLE AS inserted_products
FOR EACH STATEMENT EXECUTE FUNCTION search_vocabulary_inserted();

CREATE OR REPLACE TRIGGER search_vocabulary_updated AFTER UPDATE ON catalog_product
REFERENCING OLD TABLE AS products_before NEW TABLE AS products_after
FOR EACH STATEMENT EXECUTE FUNCTION search_vocabulary_updated();

CREATE OR REPLACE TRIGGER search_vocabulary_deleted AFTER DELETE ON catalog_product
REFERENCING OLD TABLE AS deleted_products
FOR EACH STATEMENT EXECUTE FUNCTION search_vocabulary_deleted();

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
DROP TRIGGER IF EXISTS search_vocabulary_updated ON catalog_product;
DROP TRIGGER IF EXISTS search_vocabulary_inserted ON catalog_product;
DROP FUNCTION IF EXISTS search_vocabulary_rebuild();
DROP FUNCTION IF EXISTS search_vocabulary_truncate();
DROP FUNCTION IF EXISTS search_vocabulary_deleted();
DROP FUNCTION IF EXISTS search_vocabulary_updated();
DROP FUNCTION IF EXISTS search_vocabulary_inserted();
DROP FUNCTION IF EXISTS search_vocabulary_count(text[], text[]);
DROP FUNCTION IF EXISTS search_word_lexeme(text);
DROP FUNCTION IF EXISTS search_name_words(text);
"""


class Migration(migrations.Migration):
    dependencies = [
        ('catalog', '0005_product_imports'),
        ('search', '0004_sql_vocabulary'),
    ]

    operations = [
        InstallSQL(name='vocabulary', sql=VOCABULARY, previous=VOCABULARY_PREVIOUS),
    ]
