"""Product search: one query in, one page of ranked, highlighted products out."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connections
from django.db.models import Q

from emporium.catalog.models import Category, Product
from emporium.core.db.prepared import fetch_prepared
from emporium.core.db.replicas import read_alias
from emporium.core.errors import InvalidInput
from emporium.search.backends import RawHit, SearchFilters, last_word, search_backend
from emporium.search.highlighting import highlight_markup

QUERY_MAX_LENGTH = 200
PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 50
# Relevance order cannot be walked with a keyset, so pages are offsets, and
# offsets are bounded: nobody reads past the first thousand results, and a
# deep offset would cost a ranking of everything before it.
RESULT_WINDOW = 1_000
# Below this many full-text matches the query is probably misspelt, and the
# typo-tolerant search runs instead. One: any exact match beats guesses, which
# would otherwise mix products that share only one of the words.
FUZZY_BELOW = 1
SUGGESTIONS_MAX = 5
# What a hit shows of its product (the API's hit serializer, the page's result):
# descriptions and attributes are not read, only the highlighted snippet.
HIT_FIELDS = (
    "id",
    "name",
    "price",
    "rating_total",
    "review_count",
    "stock_quantity",
    "category_id",
    "category__name",
)


@dataclass(frozen=True)
class _HitProductsStatement:
    """The SELECT of HIT_FIELDS for a list of ids, derived once from HIT_FIELDS."""

    sql: str
    product_fields: list[str]
    # Per related object: the foreign key's field, the related model's field names.
    related: list[tuple[Any, list[str]]]


def _in_model_order(model: Any, names: list[str]) -> list[str]:
    """``names`` as attnames in the order of the model's fields, as ``from_db`` takes values."""
    ordered = [
        field.attname
        for field in model._meta.concrete_fields
        if field.attname in names or field.name in names
    ]
    if len(ordered) != len(set(names)):
        raise TypeError(f"HIT_FIELDS names fields {model.__name__} does not have: {names}")
    return ordered


def _field(model: Any, name: str) -> Any:
    return model._meta.get_field(name)


@functools.cache
def _hit_products_statement() -> _HitProductsStatement:
    quote = connections["default"].ops.quote_name
    product_fields = _in_model_order(Product, [name for name in HIT_FIELDS if "__" not in name])
    columns = [f"p.{quote(_field(Product, name).column)}" for name in product_fields]
    joins: list[str] = []
    related: list[tuple[Any, list[str]]] = []
    for relation in dict.fromkeys(name.split("__")[0] for name in HIT_FIELDS if "__" in name):
        foreign_key = _field(Product, relation)
        if foreign_key.attname not in product_fields:
            raise TypeError(f"HIT_FIELDS must include {foreign_key.attname} for {relation}")
        model: Any = foreign_key.related_model
        key = foreign_key.target_field
        names = _in_model_order(
            model,
            [key.attname]
            + [name.split("__", 1)[1] for name in HIT_FIELDS if name.startswith(f"{relation}__")],
        )
        alias = f"r{len(joins)}"
        columns += [f"{alias}.{quote(_field(model, name).column)}" for name in names]
        joins.append(
            f" LEFT JOIN {quote(model._meta.db_table)} AS {alias}"
            f" ON {alias}.{quote(key.column)} = p.{quote(foreign_key.column)}"
        )
        related.append((foreign_key, names))
    # Only quoted names from the models are interpolated; the ids are a parameter.
    table = quote(Product._meta.db_table)
    select = f"SELECT {', '.join(columns)} FROM {table} AS p"  # noqa: S608 - quoted model names only
    primary_key: Any = Product._meta.pk
    sql = f"{select}{''.join(joins)} WHERE p.{quote(primary_key.column)} = ANY(%s)"
    return _HitProductsStatement(sql=sql, product_fields=product_fields, related=related)


def hit_products(ids: Sequence[int]) -> dict[int, Product]:
    """The products of a page of hits by id, only HIT_FIELDS loaded; deleted ones missing.

    On PostgreSQL one prepared statement derived from HIT_FIELDS, its rows made
    into models as the ORM makes them (``from_db``, the related object cached
    where ``select_related`` caches it). The ORM's ``in_bulk`` of the same
    fields compiled its query afresh for every page: 0.86 ms of CPU for 20
    products against 0.28 ms. On other databases (the embedded profile) it is
    that ``in_bulk``, whose converters turn SQLite's numbers into decimals.
    """
    if not ids:
        return {}
    using = read_alias()
    if connections[using].vendor != "postgresql":
        return (
            Product.objects.using(using)
            .select_related(*{name.split("__")[0] for name in HIT_FIELDS if "__" in name})
            .only(*HIT_FIELDS)
            .in_bulk(list(ids))
        )
    statement = _hit_products_statement()
    width = len(statement.product_fields)
    products: dict[int, Product] = {}
    for row in fetch_prepared(statement.sql, [list(ids)], using=using):
        product = Product.from_db(using, statement.product_fields, row[:width])
        position = width
        for foreign_key, names in statement.related:
            values = row[position : position + len(names)]
            position += len(names)
            related = (
                None
                if getattr(product, foreign_key.attname) is None
                else foreign_key.related_model.from_db(using, names, values)
            )
            foreign_key.set_cached_value(product, related)
        products[product.pk] = product
    return products


class SearchPageOutOfRange(InvalidInput):
    code = "search_page_out_of_range"
    default_message = f"Search results are limited to the first {RESULT_WINDOW}."


@dataclass(frozen=True)
class SearchHit:
    product: Product
    rank: float
    name_highlighted: str
    snippet: str


@dataclass(frozen=True)
class SearchResults:
    query: str
    hits: list[SearchHit]
    # Matches counted up to RESULT_WINDOW; ``total_capped`` says there are more.
    total: int
    total_capped: bool
    page: int
    page_size: int
    # "full_text", or "fuzzy" when typo tolerance found the results.
    match: str
    suggestions: list[str]
    # The query that was searched instead, when misspelt words were corrected.
    corrected_query: str | None = None

    @property
    def has_next(self) -> bool:
        return self.page * self.page_size < self.total

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def page_count(self) -> int:
        return max(1, -(-self.total // self.page_size))


def normalized_query(query: str) -> str:
    """The query as it is searched: runs of whitespace collapsed, none at either end."""
    return " ".join(query.split())


def page_bounds_check(*, page: int, page_size: int) -> None:
    if page < 1 or not 1 <= page_size <= PAGE_SIZE_MAX:
        raise InvalidInput(
            f"page must be at least 1 and page_size between 1 and {PAGE_SIZE_MAX}.",
            details={"page": [str(page)], "page_size": [str(page_size)]},
        )
    if (page - 1) * page_size >= RESULT_WINDOW:
        raise SearchPageOutOfRange(
            details={"page": [f"At most page {RESULT_WINDOW // page_size} at this page size."]}
        )


def product_search(
    *,
    query: str,
    category_id: int | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    in_stock: bool | None = None,
    page: int = 1,
    page_size: int = PAGE_SIZE_DEFAULT,
) -> SearchResults:
    """Products matching ``query`` (websearch syntax, last word as a prefix), best first.

    Runs a typo-tolerant search when full text finds fewer than FUZZY_BELOW
    products (on PostgreSQL: the same search with misspelt words corrected
    against the vocabulary of product names), and offers close queries that do
    find products when nothing is found at all.
    Raises InvalidInput for an unknown category or a page outside the window.
    """
    query = normalized_query(query)
    if len(query) > QUERY_MAX_LENGTH:
        raise InvalidInput(
            f"The query is longer than {QUERY_MAX_LENGTH} characters.",
            details={"q": [f"Ensure this field has no more than {QUERY_MAX_LENGTH} characters."]},
        )
    page_bounds_check(page=page, page_size=page_size)
    filters = SearchFilters(
        category_id=category_id, min_price=min_price, max_price=max_price, in_stock=in_stock
    )
    backend = search_backend()
    offset = (page - 1) * page_size
    limit = min(page_size, RESULT_WINDOW - offset)
    match = "full_text"
    corrected_query: str | None = None
    total = 0
    raw_hits: list[RawHit] = []
    if query:
        total, raw_hits = backend.ranked(
            query=query, filters=filters, offset=offset, limit=limit, cap=RESULT_WINDOW + 1
        )
    if query and total < FUZZY_BELOW:
        fuzzy = backend.fuzzy(
            query=query, filters=filters, offset=offset, limit=limit, cap=RESULT_WINDOW + 1
        )
        if fuzzy.total > total:
            match, total, raw_hits = "fuzzy", fuzzy.total, fuzzy.hits
            corrected_query = fuzzy.corrected_query

    products = hit_products([hit.product_id for hit in raw_hits])
    hits = [
        SearchHit(
            product=products[hit.product_id],
            rank=hit.rank,
            name_highlighted=highlight_markup(hit.name_marked),
            snippet=highlight_markup(hit.snippet_marked),
        )
        for hit in raw_hits
        if hit.product_id in products  # deleted between the two queries
    ]
    suggestions: list[str] = []
    if not total and query:
        suggestions = backend.similar_names(query=query, limit=SUGGESTIONS_MAX)
    return SearchResults(
        query=query,
        hits=hits,
        total=min(total, RESULT_WINDOW),
        total_capped=total > RESULT_WINDOW,
        page=page,
        page_size=page_size,
        match=match,
        suggestions=suggestions,
        corrected_query=corrected_query,
    )


# -- autocomplete ----------------------------------------------------------------------

SUGGEST_MAX_LENGTH = 100
COMPLETIONS_MAX = 8
CATEGORY_MATCHES_MAX = 5


@dataclass(frozen=True)
class CategoryMatch:
    id: int
    name: str


@dataclass(frozen=True)
class Suggestions:
    query: str
    # Whole queries: the words before the last, then a completion of the last one.
    completions: list[str]
    categories: list[CategoryMatch]


def search_suggest(*, prefix: str) -> Suggestions:
    """Completions of the word being typed (the query's last), and the categories it may name.

    The last word is completed from the words of product names, those most
    products have first (an exact word counts as its own completion); when
    fewer than COMPLETIONS_MAX words start with it, words that start with its
    first two letters and are one edit from it (two past six letters) follow,
    so "lapm" still offers "lamp". The categories are those with a name word
    starting with it. What comes before the last word is kept as typed; a
    query that does not end in a word (punctuation) gets nothing.
    """
    prefix = normalized_query(prefix)
    typing = last_word(prefix)
    if typing is None:
        return Suggestions(query=prefix, completions=[], categories=[])
    typed_before = prefix[: len(prefix) - len(typing)]
    word = typing.lower()
    completions = [
        typed_before + completion
        for completion in search_backend().completions(word=word, limit=COMPLETIONS_MAX)
    ]
    categories = [
        CategoryMatch(id=category_id, name=name)
        for category_id, name in category_names_starting(word=word, limit=CATEGORY_MATCHES_MAX)
    ]
    return Suggestions(query=prefix, completions=completions, categories=categories)


def category_names_starting(*, word: str, limit: int) -> list[tuple[int, str]]:
    """Categories with a name word starting with ``word``, shallow ones first, then by name."""
    return list(
        Category.objects.filter(Q(name__istartswith=word) | Q(name__icontains=f" {word}"))
        .order_by("depth", "name", "id")
        .values_list("id", "name")[:limit]
    )
