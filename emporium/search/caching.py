"""What search caches, under which of the catalog's namespaces.

Search answers are rendered bytes in the catalog's versioned response cache
(``emporium.core.cache``, docs/caching.md), so they are invalidated by the same
bumps as the product list: any product, price, stock, review or category
change bumps ``catalog.products`` after it commits, and the next search is
computed afresh. The page and the suggestions also show categories (the
filter's options, matching categories), so they depend on
``catalog.categories`` too.

============================  ==================================================
response                      namespaces
============================  ==================================================
``GET /api/search/``          catalog, catalog.products
``GET /search/``              catalog, catalog.products, catalog.categories
its category options          catalog, catalog.categories
``GET /api/search/suggest/``  catalog, catalog.categories; catalog.vocabulary
                              lagging
============================  ==================================================

The suggestions show only product-name words and category names, so they
depend on ``catalog.vocabulary`` (products created, renamed or deleted)
instead of ``catalog.products``: the stock and price changes of every
checkout leave them cached. They follow ``catalog.vocabulary`` as a lagging
namespace (``emporium.core.cache``): after a bump each cached prefix is
refreshed at its own moment within ``CATALOG_CACHE_VOCABULARY_LAG_SECONDS``,
so the hundreds of prefixes that one new product name invalidates are
recomputed over that window instead of in its first second.

Keys are built from validated, normalised parameters (the query's whitespace
collapsed, numbers as parsed), so two spellings of one search share an entry
and a parameter the search does not read cannot split the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emporium.catalog import caching as catalog_caching

RESULTS = "search.results"
PAGE = "search.page"
SUGGEST = "search.suggest"
# The search page's category filter: every category as an option.
CATEGORY_OPTIONS = "search.category_options"


def results_namespaces() -> list[str]:
    return catalog_caching.product_list_namespaces()


def page_namespaces() -> list[str]:
    return [*catalog_caching.product_list_namespaces(), catalog_caching.CATEGORIES]


def category_options_namespaces() -> list[str]:
    return [catalog_caching.CATALOG, catalog_caching.CATEGORIES]


def suggest_namespaces() -> list[str]:
    return [catalog_caching.CATALOG, catalog_caching.CATEGORIES]


def suggest_lagging_namespaces() -> list[str]:
    return [catalog_caching.VOCABULARY]


def search_key(kind: str, *, base_uri: str, arguments: Mapping[str, Any]) -> str:
    """One search's key: its kind, the URL its links point to, and what it searched."""
    params = {name: str(value) for name, value in arguments.items() if value is not None}
    return catalog_caching.list_key(kind, base_uri=base_uri, params=params)


def suggest_key(prefix: str) -> str:
    return f"{SUGGEST}|{prefix}"
