"""The vocabulary's lexeme index in byte order (``text_pattern_ops``).

Search replaces the word being typed by the name lexemes that start with its
stem, a range of this index (``PostgresSearchBackend._name_lexemes_starting``);
the default operator class follows the database's collation, whose order is no
prefix range. The same index still serves the equality look-ups of the spelling
check. PostgreSQL only, like the table (search/0002).
"""

from django.db import migrations

FORWARD = [
    "DROP INDEX IF EXISTS search_vocabulary_lexeme_idx",
    "CREATE INDEX search_vocabulary_lexeme_idx ON search_vocabulary (lexeme text_pattern_ops)",
]
BACKWARD = [
    "DROP INDEX IF EXISTS search_vocabulary_lexeme_idx",
    "CREATE INDEX search_vocabulary_lexeme_idx ON search_vocabulary (lexeme)",
]


def _run(schema_editor, statements):
    if schema_editor.connection.vendor != "postgresql":
        return  # the embedded profile has no vocabulary table
    for statement in statements:
        schema_editor.execute(statement)


def forward(apps, schema_editor):
    _run(schema_editor, FORWARD)


def backward(apps, schema_editor):
    _run(schema_editor, BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("search", "0005_sql_vocabulary")]

    operations = [migrations.RunPython(forward, backward)]
