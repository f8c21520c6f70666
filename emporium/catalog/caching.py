"""What the catalog caches, under which namespaces, and for how long.

Every cached catalog response depends on the ``catalog`` namespace (bumped by
bulk writes that touch an unknown set of rows) plus one narrower namespace:

========================  =============================  ==========================
response                  namespaces                     bumped by
========================  =============================  ==========================
product list pages        catalog, catalog.products      any product, stock, review
                                                         or category change
product detail            catalog, catalog.product.<id>  that product's writes, its
                                                         category's rename
category list and detail  catalog, catalog.categories    any category change
========================  =============================  ==========================

``catalog.vocabulary`` stands for the words of product names (what search's
autocomplete offers): it is bumped when a product is created, renamed or
deleted, and not by a price, stock or review change, so a checkout does not
empty the autocomplete's cache.

The API reads through :func:`emporium.core.cache.versioned_fetch`; the
services bump after commit through ``emporium.catalog.services``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from emporium.core.cache import CachePolicy, conditional_response, versioned_fetch

CATALOG = "catalog"
PRODUCT_LIST = "catalog.products"
CATEGORIES = "catalog.categories"
VOCABULARY = "catalog.vocabulary"


def product_namespace(product_id: int) -> str:
    return f"catalog.product.{product_id}"


def product_list_namespaces() -> list[str]:
    return [CATALOG, PRODUCT_LIST]


def product_detail_namespaces(product_id: int) -> list[str]:
    return [CATALOG, product_namespace(product_id)]


def category_namespaces() -> list[str]:
    return [CATALOG, CATEGORIES]


def list_key(kind: str, *, base_uri: str, params: Mapping[str, str]) -> str:
    """A key for one list page: its kind, the URL it links to, and its query.

    The pages carry absolute next/previous links, so the scheme, host and path
    are part of what was rendered. ``params`` must be only the parameters the
    list reads, each with the value it reads (the last one, for a repeated
    parameter); their order does not matter.
    """
    return f"{kind}|{base_uri}|{urlencode(sorted(params.items()))}"


def detail_key(kind: str, object_id: int) -> str:
    return f"{kind}|{object_id}"


def known_params(query: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The query parameters a list understands; anything else changes nothing it renders."""
    return {name: query[name] for name in names if name in query}


def cache_policy() -> CachePolicy:
    return CachePolicy(
        alias=settings.CATALOG_CACHE_ALIAS,
        fresh_seconds=float(settings.CATALOG_CACHE_FRESH_SECONDS),
        stale_seconds=float(settings.CATALOG_CACHE_STALE_SECONDS),
        lock_seconds=float(settings.CATALOG_CACHE_LOCK_SECONDS),
        wait_seconds=float(settings.CATALOG_CACHE_WAIT_SECONDS),
        backoff_seconds=float(settings.CATALOG_CACHE_FAILURE_BACKOFF_SECONDS),
        lag_seconds=float(settings.CATALOG_CACHE_VOCABULARY_LAG_SECONDS),
        enabled=bool(getattr(settings, "CATALOG_CACHE_ENABLED", True)),
    )


def cache_control() -> str:
    return (
        f"public, max-age={settings.CATALOG_CACHE_MAX_AGE}, "
        f"stale-while-revalidate={settings.CATALOG_CACHE_STALE_WHILE_REVALIDATE}"
    )


def cached_json(
    request: Request,
    *,
    key: str,
    namespaces: Sequence[str],
    data: Callable[[], Any],
    lagging: Sequence[str] = (),
) -> HttpResponse:
    """The cached JSON rendering of ``data()``, which runs only when the entry must be built.

    Catalog reads and search answers both use it: the same policy, the same
    conditional answer (ETag/304) and the same Cache-Control. ``lagging``
    namespaces are followed up to ``CATALOG_CACHE_VOCABULARY_LAG_SECONDS`` late.
    """
    lookup = versioned_fetch(
        key=key,
        namespaces=namespaces,
        compute=lambda: JSONRenderer().render(data()),
        policy=cache_policy(),
        lagging=lagging,
    )
    return conditional_response(
        request,
        lookup.entry,
        content_type=JSONRenderer.media_type,
        cache_control=cache_control(),
    )
