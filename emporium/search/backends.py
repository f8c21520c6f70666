"""The two search engines behind one interface: PostgreSQL full-text search and SQLite FTS5.

Each backend answers the same questions (how many products match, which
ones are on a page with what rank and highlights, which names are close to a
misspelt query) so ``selectors.product_search`` does not know which engine it
talks to. All user input reaches the database as bound parameters; the only
text put into SQL is built here from constants.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from django.db import OperationalError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from emporium.catalog.selectors import category_subtree_id_list, unknown_category
from emporium.core.db.prepared import fetch_prepared
from emporium.core.db.replicas import read_alias
from emporium.search.highlighting import MARK_END, MARK_START

# A word the prefix match may extend: letters and digits only, so it is a
# single lexeme for both engines' parsers.
_PREFIXABLE_WORD = re.compile(r"^[^\W_]+$")
_WORD = re.compile(r"[^\W_]+")
MAX_QUERY_WORDS = 32


@dataclass(frozen=True)
class SearchFilters:
    category_id: int | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None

    def sql(self) -> tuple[str, list[Any]]:
        """Conditions on the product table aliased ``p``, each starting with AND."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.category_id is not None:
            # The subtree as a list of ids rather than a subquery: the planner
            # then knows how many products the filter keeps (it planned one
            # full-text index scan per category of the subtree otherwise).
            subtree = category_subtree_id_list(category_id=self.category_id)
            if not subtree:
                raise unknown_category(self.category_id)
            clauses.append(f"p.category_id IN ({', '.join(['%s'] * len(subtree))})")
            params.extend(subtree)
        if self.min_price is not None:
            clauses.append("p.price >= %s")
            params.append(self.min_price)
        if self.max_price is not None:
            clauses.append("p.price <= %s")
            params.append(self.max_price)
        if self.in_stock is True:
            clauses.append("p.stock_quantity > 0")
        elif self.in_stock is False:
            clauses.append("p.stock_quantity = 0")
        return "".join(f" AND {clause}" for clause in clauses), params


@dataclass(frozen=True)
class RawHit:
    product_id: int
    rank: float
    name_marked: str
    snippet_marked: str


@dataclass
class FuzzyResult:
    hits: list[RawHit] = field(default_factory=list)
    total: int = 0
    # The query that found ``hits`` when it is the user's with words corrected.
    corrected_query: str | None = None


@dataclass(frozen=True)
class SpellingCheck:
    """What the vocabulary says about a query's words.

    ``options`` maps each word no product name has (in any form full text
    would match) to the closest vocabulary words, best first; a word with no
    close enough word is left out and stays as typed. ``only_stop_words`` is
    set when full text cannot match any word of the query at all.
    """

    options: dict[str, list[str]] = field(default_factory=dict)
    only_stop_words: bool = False

    def corrected(self, query: str, choice: dict[str, str] | None = None) -> str:
        """The query with each unknown word replaced (by its best option unless chosen)."""
        replacements = {word: options[0] for word, options in self.options.items()}
        replacements.update(choice or {})
        return _WORD.sub(
            lambda found: replacements.get(found.group().lower(), found.group()), query
        )


def _reader() -> BaseDatabaseWrapper:
    """The connection a search reads on: a replica when the request may use one.

    Search runs raw SQL, which Django's router never sees, so it asks the
    router's rule itself (``core.db.replicas.read_alias``).
    """
    return connections[read_alias()]


class SearchBackend(Protocol):
    def count(self, *, query: str, filters: SearchFilters, cap: int) -> int: ...

    def ranked(
        self, *, query: str, filters: SearchFilters, offset: int, limit: int, cap: int
    ) -> tuple[int, list[RawHit]]:
        """How many products match (counted up to ``cap``) and the page of them."""
        ...

    def fuzzy(
        self, *, query: str, filters: SearchFilters, offset: int, limit: int, cap: int
    ) -> FuzzyResult: ...

    def similar_names(self, *, query: str, limit: int) -> list[str]: ...

    def completions(self, *, word: str, limit: int) -> list[str]:
        """Product-name words that complete ``word`` (lowercase), then close ones."""
        ...

    def spelling_check(self, query: str) -> SpellingCheck:
        """The query's words no product name has, each with the closest name words."""
        ...


def split_last_word(query: str) -> tuple[str, str | None]:
    """The query without its last word, and that word when a prefix match may extend it.

    The last word is being typed, so "wireless head" should find "headphones".
    It is left alone when it is part of websearch syntax: inside quotes, a
    negation, after "or", or followed by a space (the user finished it).
    """
    if not query or query[-1].isspace() or query.count('"') % 2:
        return query, None
    head, _, last = query.rpartition(" ")
    if not _PREFIXABLE_WORD.match(last) or last.lower() == "or":
        return query, None
    previous = head.rsplit(" ", 1)[-1].lower() if head.strip() else ""
    if previous == "or":
        return query, None
    return head.strip(), last


_LAST_WORD = re.compile(r"[^\W_]+$")
# Completions tolerate a typo only after the first letters, which must be right:
# they pick the candidates (an index range), and a typo there is rare.
COMPLETION_FIXED_LETTERS = 2
COMPLETION_TYPO_FROM = 4
COMPLETION_CANDIDATES = 2_000


def last_word(text: str) -> str | None:
    """The word ``text`` ends in (letters and digits), or None when it ends otherwise."""
    found = _LAST_WORD.search(text)
    return found.group() if found else None


def _edit_distance(left: str, right: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, swaps."""
    previous_previous: list[int] = []
    previous = list(range(len(right) + 1))
    for i, left_char in enumerate(left, 1):
        current = [i]
        for j, right_char in enumerate(right, 1):
            cost = 0 if left_char == right_char else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and left_char == right[j - 2] and left[i - 2] == right_char:
                value = min(value, previous_previous[j - 2] + 1)
            current.append(value)
        previous_previous, previous = previous, current
    return previous[-1]


def completion_typo_allowance(typed: str) -> int:
    """How many edits a word being typed may be from a completion's start."""
    if len(typed) < COMPLETION_TYPO_FROM or any(character.isdigit() for character in typed):
        return 0
    return 1 if len(typed) <= 6 else 2  # one edit up to six letters, two past


def close_completions(typed: str, candidates: list[str]) -> list[str]:
    """Candidates whose start is within the typo allowance of ``typed``, closest first.

    The start is compared at the typed length, one letter shorter and one
    longer, so a dropped or doubled letter counts as one edit. Equally close
    candidates keep their order (the most common first).
    """
    allowance = completion_typo_allowance(typed)
    if not allowance:
        return []
    size = len(typed)
    distances = {
        candidate: min(
            (
                _edit_distance(typed, candidate[:length])
                for length in (size - 1, size, size + 1)
                if 0 < length <= len(candidate)
            ),
            default=allowance + 1,
        )
        for candidate in candidates
    }
    close = [candidate for candidate in candidates if distances[candidate] <= allowance]
    return sorted(close, key=lambda candidate: distances[candidate])


def _tsquery_lexeme(lexeme: str) -> str:
    """A lexeme as tsquery input reads it literally: quoted, its quotes and backslashes escaped."""
    escaped = lexeme.replace("\\", "\\\\").replace("'", "''")
    return f"'{escaped}'"


class PostgresSearchBackend:
    """Full-text search on the trigger-maintained ``catalog_product.search_vector``."""

    CONFIG = "english"
    # ts_rank_cd weights for {D, C, B, A}: a name match (A) counts five times a
    # description match (B), so it wins over a description that repeats the word.
    RANK_WEIGHTS = "{0.02, 0.05, 0.2, 1.0}"
    NAME_HEADLINE = f"StartSel={MARK_START}, StopSel={MARK_END}, HighlightAll=true"
    SNIPPET_HEADLINE = f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=12"
    # Ranking reads every candidate's vector from the heap, so a word found in
    # 60,000 of 1,000,000 products costs ~350 ms to rank in full. Only this many
    # matches (in index order) are ranked: the result window is 1,000 and the
    # count is capped one past it, and for a word that common the name matches
    # among any 1,001 are as good as any other (2,000 took twice the heap reads).
    RANK_CANDIDATES = 1_001
    FUZZY_THRESHOLD = "0.4"
    FUZZY_TIMEOUT_MS = 150
    SUGGESTION_THRESHOLD = "0.3"
    # pg_trgm similarity a vocabulary word needs to replace a misspelt one,
    # and how many such words are kept per misspelt word (the best one is
    # searched, the others are offered as suggestions when nothing is found).
    CORRECTION_THRESHOLD = "0.3"
    CORRECTION_OPTIONS = 3
    SUGGESTION_CANDIDATES = 5
    # The most name lexemes a word being typed is replaced by (_name_lexemes_starting).
    PREFIX_LEXEMES_MAX = 16

    def __init__(self) -> None:
        self._spelling_checks: dict[str, SpellingCheck] = {}
        # Queries this backend already saw find nothing without filters.
        self._unfiltered_misses: set[str] = set()
        # Per word being typed, the name lexemes it was searched as (one look-up
        # per search, however many statements the search runs with that word).
        self._name_lexemes: dict[str, list[str]] = {}

    def _tsquery(self, query: str) -> tuple[str, list[Any]]:
        head, last = split_last_word(query)
        parts: list[str] = []
        params: list[Any] = []
        if head:
            parts.append(f"websearch_to_tsquery('{self.CONFIG}', %s)")
            params.append(head)
        if last:
            lexemes = self._name_lexemes_starting(last)
            if lexemes:
                parts.append("%s::tsquery")
                params.append(" | ".join(_tsquery_lexeme(lexeme) for lexeme in lexemes))
            else:
                parts.append(f"to_tsquery('{self.CONFIG}', %s)")
                params.append(f"{last}:*")
        if not parts:
            return "''::tsquery", []
        return " && ".join(parts), params

    def _name_lexemes_starting(self, word: str) -> list[str]:
        """The lexemes of product-name words that start with ``word``'s, when there are few.

        The word being typed matches as a prefix. As a partial match
        (``'steel':*``) the full-text index gathers every posting of every
        lexeme with that prefix into one bitmap before it intersects the
        query's other words: 15 ms for a word in a fifth of a million products,
        against 3 ms for the same query with the word exact, whose postings the
        index skips through. So the prefix becomes the few name lexemes that
        start with it, ORed (exact entries). Empty, so the partial match runs
        as before, when no name word starts with it (a word found only in
        descriptions) or too many do (one or two letters typed).
        """
        known = self._name_lexemes.get(word)
        if known is not None:
            return known
        # A range of the lexeme index (text_pattern_ops: byte order, so every
        # string starting with the stem sorts between it and it + U+10FFFF).
        rows = fetch_prepared(
            "SELECT DISTINCT lexeme FROM search_vocabulary"
            " WHERE lexeme ~>=~ search_word_lexeme(%s)"
            " AND lexeme ~<~ (search_word_lexeme(%s) || chr(1114111))"
            " ORDER BY lexeme LIMIT %s",
            [word, word, self.PREFIX_LEXEMES_MAX + 1],
        )
        lexemes = [row[0] for row in rows]
        found = lexemes if len(lexemes) <= self.PREFIX_LEXEMES_MAX else []
        self._name_lexemes[word] = found
        return found

    def count(self, *, query: str, filters: SearchFilters, cap: int) -> int:
        tsquery, tsquery_params = self._tsquery(query)
        filter_sql, filter_params = filters.sql()
        sql = f"""
            SELECT count(*) FROM (
                SELECT 1 FROM catalog_product AS p
                 WHERE p.search_vector @@ ({tsquery}){filter_sql}
                 LIMIT %s
            ) AS capped
        """  # noqa: S608 - only constants and placeholders are interpolated
        with _reader().cursor() as cursor:
            cursor.execute(sql, [*tsquery_params, *filter_params, cap])
            return int(cursor.fetchone()[0])

    def ranked(
        self, *, query: str, filters: SearchFilters, offset: int, limit: int, cap: int
    ) -> tuple[int, list[RawHit]]:
        """The page and the capped count from one scan of the full-text index.

        The candidates (at most RANK_CANDIDATES matches, in index order) are
        read once and both counted and ranked; a separate count query used to
        repeat the index scan, which is most of the time for a common word. The
        tsquery is written into the WHERE clause itself, not taken from a CTE,
        so the planner can estimate how many rows it matches.
        """
        if cap > self.RANK_CANDIDATES:
            raise ValueError("the count cap must not exceed the ranked candidates")
        tsquery, tsquery_params = self._tsquery(query)
        filter_sql, filter_params = filters.sql()
        # Headlines are the costly part, so they are made for the page's rows only.
        sql = f"""
            WITH search AS (SELECT {tsquery} AS query),
            candidates AS MATERIALIZED (
                SELECT p.id, p.search_vector
                  FROM catalog_product AS p
                 WHERE p.search_vector @@ ({tsquery}){filter_sql}
                 LIMIT %s
            ),
            hits AS (
                SELECT candidates.id,
                       ts_rank_cd(%s, candidates.search_vector, search.query) AS rank
                  FROM candidates, search
                 ORDER BY rank DESC, candidates.id
                 LIMIT %s OFFSET %s
            )
            SELECT hits.id, hits.rank,
                   ts_headline('{self.CONFIG}', p.name, search.query, %s),
                   ts_headline('{self.CONFIG}', p.description, search.query, %s),
                   (SELECT count(*) FROM candidates)
              FROM hits JOIN catalog_product AS p ON p.id = hits.id, search
             ORDER BY hits.rank DESC, hits.id
        """  # noqa: S608 - only constants and placeholders are interpolated
        params = [
            *tsquery_params,
            *tsquery_params,
            *filter_params,
            self.RANK_CANDIDATES,
            self.RANK_WEIGHTS,
            limit,
            offset,
            self.NAME_HEADLINE,
            self.SNIPPET_HEADLINE,
        ]
        # Prepared without filters: planning took ~2 ms of the ~13 ms it runs for
        # a common word, and the generic plan is the custom one (the full-text
        # index's bitmap scan). With filters the best plan depends on the values
        # (a narrow price range, a small category), so each is planned for its own.
        rows = fetch_prepared(sql, params, prepare=not filter_sql)
        if rows:
            total = min(int(rows[0][4]), cap)
        elif offset:  # past the last match: the page says nothing about the count
            total = self.count(query=query, filters=filters, cap=cap)
        else:
            total = 0
        if not total and filters == SearchFilters():
            self._unfiltered_misses.add(query.lower())
        return total, [RawHit(row[0], float(row[1]), row[2], row[3]) for row in rows]

    def fuzzy(
        self, *, query: str, filters: SearchFilters, offset: int, limit: int, cap: int
    ) -> FuzzyResult:
        """The full-text search again with misspelt words corrected against the vocabulary.

        Runs only after full text found nothing. A word some product name has
        (spelled so, with the same stem, or as the start of a word when it is
        the last one) is never corrected; when every word is known there is no
        fallback at all. Ranking, filters, highlights and pages are those of
        ``ranked``. A query of stop words only, which full text cannot match,
        keeps the trigram search over names.
        """
        check = self.spelling_check(query)
        if check.only_stop_words:
            return self._fuzzy_names(query, filters, offset, limit, cap)
        if not check.options:
            return FuzzyResult()
        corrected = check.corrected(query)
        total, hits = self.ranked(
            query=corrected, filters=filters, offset=offset, limit=limit, cap=cap
        )
        return FuzzyResult(hits=hits, total=total, corrected_query=corrected)

    def spelling_check(self, query: str) -> SpellingCheck:
        """The vocabulary's verdict on the query's words, asked once per backend and query."""
        cached = self._spelling_checks.get(query)
        if cached is None:
            try:
                cached = self._spelling_check(query)
            except OperationalError:  # statement_timeout: correction is best effort
                cached = SpellingCheck()
            self._spelling_checks[query] = cached
        return cached

    def _spelling_check(self, query: str) -> SpellingCheck:
        words = list(dict.fromkeys(word.lower() for word in _WORD.findall(query)))
        words = words[:MAX_QUERY_WORDS]
        if not words:
            return SpellingCheck()
        _, last = split_last_word(query)
        typing = last.lower() if last else None
        # Per word: does full text know it at all (an English lexeme), and does
        # a product name have it (same word, same lexeme, or a word it starts).
        selects: list[str] = []
        params: list[Any] = []
        for word in words:
            prefix = ""
            if word == typing:
                prefix = " OR EXISTS (SELECT 1 FROM search_vocabulary WHERE word LIKE %s)"
            selects.append(
                f"""SELECT %s, search_word_lexeme(%s) IS NOT NULL,
                       EXISTS (SELECT 1 FROM search_vocabulary WHERE word = %s)
                       OR EXISTS (SELECT 1 FROM search_vocabulary
                                   WHERE lexeme = search_word_lexeme(%s)){prefix}"""  # noqa: S608 - only constants and placeholders
            )
            params.extend([word, word, word, word])
            if prefix:
                params.append(word + "%")  # _WORD has no LIKE wildcards
        with self._bounded(self.CORRECTION_THRESHOLD) as cursor:
            cursor.execute(" UNION ALL ".join(selects), params)
            verdicts = cursor.fetchall()
            if not any(has_lexeme for _, has_lexeme, _ in verdicts):
                return SpellingCheck(only_stop_words=True)
            unknown = [
                word
                for word, has_lexeme, known in verdicts
                if has_lexeme and not known and self._correctable(word)
            ]
            if not unknown:
                return SpellingCheck()
            # Closest first, then the word more products have.
            cursor.execute(
                """
                SELECT typed.word, close.word
                  FROM unnest(%s::text[]) WITH ORDINALITY AS typed(word, position)
                 CROSS JOIN LATERAL (
                       SELECT v.word FROM search_vocabulary AS v
                        WHERE v.word %% typed.word
                        ORDER BY similarity(v.word, typed.word) DESC, v.documents DESC, v.word
                        LIMIT %s
                 ) AS close
                """,
                [unknown, self.CORRECTION_OPTIONS],
            )
            options: dict[str, list[str]] = {}
            for typed, close in cursor.fetchall():
                options.setdefault(typed, []).append(close)
        return SpellingCheck(options=options)

    @staticmethod
    def _correctable(word: str) -> bool:
        # Too short for trigrams to say anything, or a model number: left as typed.
        return len(word) >= 3 and not any(character.isdigit() for character in word)

    def _fuzzy_names(
        self, query: str, filters: SearchFilters, offset: int, limit: int, cap: int
    ) -> FuzzyResult:
        """Products whose name is trigram-close to the query (``<%`` on the name index).

        Only for queries full text cannot match (stop words): there is nothing
        to highlight, so the name and the start of the description come back as
        they are. The candidates are bounded like the full-text ones.
        """
        filter_sql, filter_params = filters.sql()
        try:
            return self._fuzzy(query, filter_sql, filter_params, offset, limit, cap)
        except OperationalError:  # statement_timeout: typo tolerance is best effort
            return FuzzyResult()

    def _fuzzy(
        self,
        query: str,
        filter_sql: str,
        filter_params: list[Any],
        offset: int,
        limit: int,
        cap: int,
    ) -> FuzzyResult:
        with self._bounded(self.FUZZY_THRESHOLD) as cursor:
            cursor.execute(
                f"""
                WITH candidates AS (
                    SELECT p.id, p.name, p.description, word_similarity(%s, p.name) AS rank
                      FROM catalog_product AS p
                     WHERE %s <%% p.name{filter_sql}
                     LIMIT %s
                )
                SELECT id, rank, name, left(description, 200),
                       (SELECT count(*) FROM candidates)
                  FROM candidates
                 ORDER BY rank DESC, id
                 LIMIT %s OFFSET %s
                """,  # noqa: S608 - only constants and placeholders are interpolated
                [query, query, *filter_params, min(cap, self.RANK_CANDIDATES), limit, offset],
            )
            rows = cursor.fetchall()
            if rows:
                total = int(rows[0][4])
            else:
                cursor.execute(
                    f"""
                    SELECT count(*) FROM (
                        SELECT 1 FROM catalog_product AS p WHERE %s <%% p.name{filter_sql}
                         LIMIT %s
                    ) AS capped
                    """,  # noqa: S608 - only constants and placeholders are interpolated
                    [query, *filter_params, min(cap, self.RANK_CANDIDATES)],
                )
                total = int(cursor.fetchone()[0])
        hits = [RawHit(row[0], float(row[1]), row[2], row[3]) for row in rows]
        return FuzzyResult(hits=hits, total=total)

    @contextlib.contextmanager
    def _bounded(self, threshold: str) -> Iterator[Any]:
        """A cursor of the search's connection in a transaction of its own, with the
        similarity threshold and a time limit set for that transaction only.

        A trigram search over a filter that few rows pass, or a query of short
        common trigrams, can recheck most of the catalog; past the limit the
        fallback gives up rather than make the request slow.
        """
        reader = _reader()
        with transaction.atomic(using=reader.alias), reader.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('pg_trgm.word_similarity_threshold', %s, true),"
                " set_config('pg_trgm.similarity_threshold', %s, true),"
                " set_config('statement_timeout', %s, true)",
                [threshold, threshold, str(self.FUZZY_TIMEOUT_MS)],
            )
            yield cursor

    def similar_names(self, *, query: str, limit: int) -> list[str]:
        """Spelling corrections of the query that find products, filters ignored.

        Candidates come from the vocabulary: the query with each misspelt word
        replaced by its closest words in turn. Each is kept only if full text
        finds something for it (checked in one statement), so a link never
        leads to another empty page. A query whose words are all spelled right
        gets none: the vocabulary has nothing to correct, and checking which
        subsets of the words occur together costs a full-text index scan per
        subset (~20 ms each on 1,000,000 products), more than the whole
        request may take (docs/adr/0018-search-vocabulary.md).
        """
        check = self.spelling_check(query)
        try:
            if check.only_stop_words:
                return self._similar_names(query, limit)
            return self._verified_queries(self._suggestion_candidates(query, check), limit)
        except OperationalError:  # statement_timeout: suggestions are best effort
            return []

    def _suggestion_candidates(self, query: str, check: SpellingCheck) -> list[str]:
        candidates = [check.corrected(query)]
        for word, options in check.options.items():
            candidates.extend(check.corrected(query, {word: option}) for option in options[1:])
        # Known to find nothing: the query itself, and anything already searched
        # without filters in this request.
        seen = {query.lower(), *self._unfiltered_misses}
        distinct: list[str] = []
        for candidate in candidates:
            if candidate.lower() not in seen:
                seen.add(candidate.lower())
                distinct.append(candidate)
        return distinct[: self.SUGGESTION_CANDIDATES]

    def _verified_queries(self, candidates: list[str], limit: int) -> list[str]:
        if not candidates:
            return []
        selects: list[str] = []
        params: list[Any] = []
        for position, candidate in enumerate(candidates):
            tsquery, tsquery_params = self._tsquery(candidate)
            selects.append(
                f"""SELECT %s WHERE EXISTS (SELECT 1 FROM catalog_product AS p
                                     WHERE p.search_vector @@ ({tsquery}))"""  # noqa: S608 - only constants and placeholders
            )
            params.extend([position, *tsquery_params])
        with self._bounded(self.SUGGESTION_THRESHOLD) as cursor:
            # One bitmap scan of the full-text index per candidate: a sequential
            # scan hoping for an early match reads the whole table when the
            # words never occur together.
            cursor.execute("SELECT set_config('enable_seqscan', 'off', true)")
            cursor.execute(" UNION ALL ".join(selects), params)
            found = sorted(row[0] for row in cursor.fetchall())
        return [candidates[position] for position in found][:limit]

    def _similar_names(self, query: str, limit: int) -> list[str]:
        with self._bounded(self.SUGGESTION_THRESHOLD) as cursor:
            cursor.execute(
                """
                SELECT name FROM (
                    SELECT name, max(word_similarity(%s, name)) AS similarity
                      FROM (
                          SELECT name FROM catalog_product WHERE %s <%% name LIMIT %s
                      ) AS candidates
                     GROUP BY name
                ) AS close
                 ORDER BY similarity DESC, name LIMIT %s
                """,
                [query, query, self.RANK_CANDIDATES, limit],
            )
            return [row[0] for row in cursor.fetchall()]

    def completions(self, *, word: str, limit: int) -> list[str]:
        """Vocabulary words starting with ``word``, most products first, then close ones.

        Both statements read a range of the vocabulary's ``text_pattern_ops``
        index: the words starting with ``word``, and only when those are too
        few, the words sharing its first letters, whose starts are compared
        with it here.
        """
        with _reader().cursor() as cursor:
            cursor.execute(
                "SELECT word FROM search_vocabulary WHERE word LIKE %s"
                " ORDER BY documents DESC, word LIMIT %s",
                [word + "%", limit],  # _WORD has no LIKE wildcards
            )
            found = [row[0] for row in cursor.fetchall()]
            if len(found) >= limit or not completion_typo_allowance(word):
                return found
            cursor.execute(
                "SELECT word FROM search_vocabulary WHERE word LIKE %s AND word NOT LIKE %s"
                " ORDER BY documents DESC, word LIMIT %s",
                [word[:COMPLETION_FIXED_LETTERS] + "%", word + "%", COMPLETION_CANDIDATES],
            )
            candidates = [row[0] for row in cursor.fetchall()]
        return [*found, *close_completions(word, candidates)][:limit]


class SqliteSearchBackend:
    """FTS5 on the trigger-maintained ``search_product_fts`` table (embedded profile).

    Typo tolerance is simpler than on PostgreSQL: candidates share a word's
    first three letters (an FTS5 prefix query), and are kept when one of their
    name's words is close to a query word by difflib's ratio.
    """

    # bm25 column weights: name, description, category name.
    BM25 = "bm25(search_product_fts, 10.0, 2.0, 1.0)"
    FUZZY_CANDIDATES = 500
    FUZZY_RATIO = 0.7

    @staticmethod
    def match_expression(query: str) -> str | None:
        """An FTS5 query from the user's words: each one quoted, the last also as a prefix."""
        words = _WORD.findall(query)[:MAX_QUERY_WORDS]
        if not words:
            return None
        _, last = split_last_word(query)
        terms = [f'"{word}"' for word in words]
        if last is not None and words[-1] == last:
            terms[-1] += "*"
        return " ".join(terms)

    def count(self, *, query: str, filters: SearchFilters, cap: int) -> int:
        expression = self.match_expression(query)
        if expression is None:
            return 0
        return self._count(expression, filters, cap)

    def _count(self, expression: str, filters: SearchFilters, cap: int) -> int:
        filter_sql, filter_params = filters.sql()
        sql = f"""
            SELECT count(*) FROM (
                SELECT 1 FROM search_product_fts
                  JOIN catalog_product AS p ON p.id = search_product_fts.rowid
                 WHERE search_product_fts MATCH %s{filter_sql}
                 LIMIT %s
            )
        """  # noqa: S608 - only constants and placeholders are interpolated
        with _reader().cursor() as cursor:
            cursor.execute(sql, [expression, *filter_params, cap])
            return int(cursor.fetchone()[0])

    def _rows(
        self, expression: str, filters: SearchFilters, offset: int, limit: int
    ) -> list[RawHit]:
        filter_sql, filter_params = filters.sql()
        sql = f"""
            SELECT p.id, -{self.BM25},
                   highlight(search_product_fts, 0, %s, %s),
                   snippet(search_product_fts, 1, %s, %s, '…', 24)
              FROM search_product_fts
              JOIN catalog_product AS p ON p.id = search_product_fts.rowid
             WHERE search_product_fts MATCH %s{filter_sql}
             ORDER BY {self.BM25}, p.id
             LIMIT %s OFFSET %s
        """  # noqa: S608 - only constants and placeholders are interpolated
        params = [MARK_START, MARK_END, MARK_START, MARK_END, expression, *filter_params]
        with _reader().cursor() as cursor:
            cursor.execute(sql, [*params, limit, offset])
            rows = cursor.fetchall()
        return [RawHit(row[0], float(row[1]), row[2], row[3]) for row in rows]

    def ranked(
        self, *, query: str, filters: SearchFilters, offset: int, limit: int, cap: int
    ) -> tuple[int, list[RawHit]]:
        expression = self.match_expression(query)
        if expression is None:
            return 0, []
        total = self._count(expression, filters, cap)
        return total, self._rows(expression, filters, offset, limit) if total else []

    def _fuzzy_candidates(self, query: str, filters: SearchFilters) -> list[RawHit]:
        words = [word.lower() for word in _WORD.findall(query)[:MAX_QUERY_WORDS]]
        stems = sorted({word[:3] for word in words if len(word) >= 3})
        if not stems:
            return []
        expression = " OR ".join(f'name : "{stem}"*' for stem in stems)
        candidates = self._rows(expression, filters, 0, self.FUZZY_CANDIDATES)
        scored: list[RawHit] = []
        for hit in candidates:
            name_words = [word.lower() for word in _WORD.findall(hit.name_marked)]
            best = max(
                (
                    difflib.SequenceMatcher(None, word, name_word).ratio()
                    for word in words
                    for name_word in name_words
                ),
                default=0.0,
            )
            if best >= self.FUZZY_RATIO:
                scored.append(RawHit(hit.product_id, best, hit.name_marked, hit.snippet_marked))
        scored.sort(key=lambda hit: (-hit.rank, hit.product_id))
        return scored

    def fuzzy(
        self, *, query: str, filters: SearchFilters, offset: int, limit: int, cap: int
    ) -> FuzzyResult:
        scored = self._fuzzy_candidates(query, filters)
        return FuzzyResult(hits=scored[offset : offset + limit], total=min(len(scored), cap))

    def spelling_check(self, query: str) -> SpellingCheck:
        """Words no product name has (the last also not as a prefix), with close name words.

        Close means difflib's ratio of at least ``FUZZY_RATIO`` among the name
        words of the products that share the word's first three letters, best
        first. FTS5 has no stop words, so ``only_stop_words`` is never set.
        """
        words = list(dict.fromkeys(word.lower() for word in _WORD.findall(query)))
        words = words[:MAX_QUERY_WORDS]
        _, last = split_last_word(query)
        typing = last.lower() if last else None
        options: dict[str, list[str]] = {}
        for word in words:
            known = f'name : "{word}"' + ("*" if word == typing else "")
            if self._count(known, SearchFilters(), 1):
                continue
            vocabulary = {
                name_word.lower()
                for hit in self._rows(f'name : "{word[:3]}"*', SearchFilters(), 0, 50)
                for name_word in _WORD.findall(hit.name_marked)
            }
            close = difflib.get_close_matches(
                word, sorted(vocabulary), n=3, cutoff=self.FUZZY_RATIO
            )
            if close:
                options[word] = close
        return SpellingCheck(options=options)

    def similar_names(self, *, query: str, limit: int) -> list[str]:
        names: list[str] = []
        for hit in self._fuzzy_candidates(query, SearchFilters()):
            name = hit.name_marked.replace(MARK_START, "").replace(MARK_END, "")
            if name not in names:
                names.append(name)
        return names[:limit]

    def completions(self, *, word: str, limit: int) -> list[str]:
        """Name words of products sharing ``word``'s first letters, most frequent first.

        The candidates are the names of at most FUZZY_CANDIDATES products
        found by an FTS5 prefix query on those letters (the tokens are
        stemmed, so the word itself may not be a prefix of any), their words
        counted here: words starting with ``word`` first, then close ones.
        """
        fixed = word[:COMPLETION_FIXED_LETTERS]
        with _reader().cursor() as cursor:
            cursor.execute(
                "SELECT name FROM search_product_fts WHERE search_product_fts MATCH %s LIMIT %s",
                [f'name : "{fixed}"*', self.FUZZY_CANDIDATES],
            )
            names = [row[0] for row in cursor.fetchall()]
        counts: dict[str, int] = {}
        for name in names:
            for name_word in {token.lower() for token in _WORD.findall(name)}:
                if name_word.startswith(fixed):
                    counts[name_word] = counts.get(name_word, 0) + 1
        ordered = sorted(counts, key=lambda candidate: (-counts[candidate], candidate))
        found = [candidate for candidate in ordered if candidate.startswith(word)]
        if len(found) < limit:
            others = [candidate for candidate in ordered if not candidate.startswith(word)]
            found.extend(close_completions(word, others))
        return found[:limit]


# Both backends satisfy the protocol, checked by mypy here.
_BACKENDS: tuple[type[SearchBackend], ...] = (PostgresSearchBackend, SqliteSearchBackend)


def search_backend() -> SearchBackend:
    if connection.vendor == "postgresql":
        return PostgresSearchBackend()
    if connection.vendor == "sqlite":
        return SqliteSearchBackend()
    raise NotImplementedError(f"No search backend for {connection.vendor}.")
