from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat, Substr

from emporium.catalog import caching
from emporium.catalog.models import MAX_CATEGORY_DEPTH, Category, Product
from emporium.core.cache import namespace_bump
from emporium.core.errors import InvalidInput
from emporium.integrations import events

# A rename bumps each product of the category; past this many it is cheaper
# to bump the whole catalog namespace at once.
EXACT_PRODUCT_BUMPS_MAX = 1_000


# -- cache invalidation --------------------------------------------------------------
#
# Every write that changes what a cached catalog response shows calls one of these
# after writing, inside its transaction if it has one. The bump itself waits for
# the commit (outside a transaction that is at once): done earlier, a concurrent
# read could fetch the new version, read the old rows and cache them under it.
# A rolled-back write bumps nothing.


def _bump(namespaces: list[str]) -> None:
    namespace_bump(
        *namespaces,
        alias=settings.CATALOG_CACHE_ALIAS,
        backoff_seconds=float(settings.CATALOG_CACHE_FAILURE_BACKOFF_SECONDS),
    )


def product_cache_invalidate(*, product_ids: Iterable[int], names_changed: bool = True) -> None:
    """After commit, makes the next read of these products, and of every product list, fresh.

    For any change to a product's own row: fields, price, stock, rating counters.
    ``names_changed=False`` says that no product was created, renamed or deleted
    (a stock, price or review change), which leaves the words of product names,
    and what is cached of them, as they were.
    """
    namespaces = [caching.PRODUCT_LIST]
    if names_changed:
        namespaces.append(caching.VOCABULARY)
    namespaces += [caching.product_namespace(product_id) for product_id in sorted(set(product_ids))]
    transaction.on_commit(lambda: _bump(namespaces))


def _category_products_bump(category_id: int) -> None:
    product_ids = list(
        Product.objects.filter(category_id=category_id).values_list("pk", flat=True)[
            : EXACT_PRODUCT_BUMPS_MAX + 1
        ]
    )
    if len(product_ids) > EXACT_PRODUCT_BUMPS_MAX:
        _bump([caching.CATALOG])
    else:
        _bump([caching.product_namespace(product_id) for product_id in product_ids])


def category_cache_invalidate(
    *, products_listed: bool = True, renamed_category_id: int | None = None
) -> None:
    """After commit, makes the next read of the categories fresh.

    ``products_listed``: product lists change too (a move changes which products
    a category filter matches; a delete turns that filter into a 400).
    ``renamed_category_id``: its products show the category's name, so each of
    them is bumped; they are looked up after the commit, when the set is final.
    """
    namespaces = [caching.CATEGORIES]
    if products_listed or renamed_category_id is not None:
        namespaces.append(caching.PRODUCT_LIST)

    def bump() -> None:
        _bump(namespaces)
        if renamed_category_id is not None:
            _category_products_bump(renamed_category_id)

    transaction.on_commit(bump)


def catalog_cache_invalidate() -> None:
    """After commit, makes every cached catalog response fresh.

    For bulk writes (imports, seeding) that touch rows nobody listed.
    """
    transaction.on_commit(lambda: _bump([caching.CATALOG]))


class CategoryCycle(InvalidInput):
    code = "category_cycle"
    default_message = "A category cannot be moved under itself or one of its descendants."


class CategoryTooDeep(InvalidInput):
    code = "category_too_deep"
    default_message = f"Categories can be nested at most {MAX_CATEGORY_DEPTH} levels deep."


class CategoryNameTaken(InvalidInput):
    code = "category_name_taken"
    default_message = "A category with this name already exists at that place in the tree."


def _name_taken(*, name: str, parent_id: int | None, exclude_id: int | None = None) -> bool:
    queryset = Category.objects.filter(name=name, parent_id=parent_id)
    if exclude_id is not None:
        queryset = queryset.exclude(pk=exclude_id)
    return queryset.exists()


def _refuse_taken_name(*, name: str, parent_id: int | None, exclude_id: int | None = None) -> None:
    # Checked here for a clear 400 (the unique constraints stay the backstop for races,
    # which the IntegrityError handlers below report the same way).
    if _name_taken(name=name, parent_id=parent_id, exclude_id=exclude_id):
        raise CategoryNameTaken(details={"name": [CategoryNameTaken.default_message]})


def _lock_category(category_id: int) -> Category:
    return Category.objects.select_for_update().get(pk=category_id)


def category_create(*, name: str, parent: Category | None = None) -> Category:
    with transaction.atomic():
        parent_path, depth = "", 0
        if parent is not None:
            parent = _lock_category(parent.pk)
            parent_path, depth = parent.path, parent.depth + 1
        if depth >= MAX_CATEGORY_DEPTH:
            raise CategoryTooDeep()
        _refuse_taken_name(name=name, parent_id=parent.pk if parent else None)
        try:
            with transaction.atomic():
                category = Category.objects.create(name=name, parent=parent, depth=depth)
        except IntegrityError:
            raise CategoryNameTaken(details={"name": [CategoryNameTaken.default_message]}) from None
        category.path = f"{parent_path}{category.pk}/"
        category.save(update_fields=["path"])
        category_cache_invalidate(products_listed=False)
    return category


def category_update(
    *, category: Category, name: str | None = None, parent: Category | Any | None = ...
) -> Category:
    """Renames and/or moves a category; a move rewrites the paths of its whole subtree.

    Pass ``parent=None`` to make it a root; leave ``parent`` out to keep it where it is.
    """
    with transaction.atomic():
        category = _lock_category(category.pk)
        fields: list[str] = []
        if name is not None and name != category.name:
            category.name = name
            fields.append("name")
        if parent is not ... and (parent.pk if parent else None) != category.parent_id:
            new_parent = _lock_category(parent.pk) if parent is not None else None
            if new_parent is not None and new_parent.path.startswith(category.path):
                raise CategoryCycle(details={"parent": ["That would create a cycle."]})
            old_path, old_depth = category.path, category.depth
            new_path = f"{new_parent.path if new_parent else ''}{category.pk}/"
            new_depth = new_parent.depth + 1 if new_parent else 0
            deepest = (
                Category.objects.filter(path__startswith=old_path)
                .order_by("-depth")
                .values_list("depth", flat=True)
                .first()
            )
            if (deepest or old_depth) - old_depth + new_depth >= MAX_CATEGORY_DEPTH:
                raise CategoryTooDeep()
            Category.objects.filter(path__startswith=old_path).exclude(pk=category.pk).update(
                path=Concat(Value(new_path), Substr("path", len(old_path) + 1)),
                depth=F("depth") + (new_depth - old_depth),
            )
            category.parent = new_parent
            category.path, category.depth = new_path, new_depth
            fields += ["parent", "path", "depth"]
        if fields:
            _refuse_taken_name(
                name=category.name, parent_id=category.parent_id, exclude_id=category.pk
            )
            try:
                with transaction.atomic():
                    category.save(update_fields=[*fields, "updated_at"])
            except IntegrityError:
                raise CategoryNameTaken(
                    details={"name": [CategoryNameTaken.default_message]}
                ) from None
            category_cache_invalidate(
                products_listed="path" in fields,
                renamed_category_id=category.pk if "name" in fields else None,
            )
    return category


def category_delete(*, category: Category) -> None:
    """Deletes an empty leaf; a category with children or products raises ProtectedError."""
    category.delete()
    category_cache_invalidate()


def product_create(
    *,
    name: str,
    sku: str,
    price: Decimal,
    category: Category,
    stock_quantity: int = 0,
    description: str = "",
    attributes: dict[str, Any] | None = None,
) -> Product:
    product = Product.objects.create(
        name=name,
        sku=sku,
        price=price,
        category=category,
        stock_quantity=stock_quantity,
        description=description,
        attributes=attributes or {},
    )
    product_cache_invalidate(product_ids=[product.pk])
    return product


PRODUCT_EDITABLE_FIELDS = (
    "name",
    "sku",
    "price",
    "category",
    "stock_quantity",
    "description",
    "attributes",
)


def product_update(*, product: Product, **changes: Any) -> Product:
    """Saves the changed fields; a lower price or a restock from zero records its event."""
    unknown = set(changes) - set(PRODUCT_EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    fields = [field for field, value in changes.items() if getattr(product, field) != value]
    old_price, old_stock = product.price, product.stock_quantity
    for field in fields:
        setattr(product, field, changes[field])
    if fields:
        with transaction.atomic():
            product.save(update_fields=[*fields, "updated_at"])
            product_changes_record(product=product, old_price=old_price, old_stock=old_stock)
        product_cache_invalidate(product_ids=[product.pk], names_changed="name" in fields)
    return product


def product_changes_record(*, product: Product, old_price: Decimal, old_stock: int) -> None:
    """Records product.price_dropped / product.back_in_stock for a change just saved.

    Called inside the transaction that saved it (the outbox), so a rolled-back
    change announces nothing and a committed one is never lost.
    """
    if Decimal(product.price) < Decimal(old_price):
        events.event_record(
            event_type=events.PRODUCT_PRICE_DROPPED,
            aggregate_type="product",
            aggregate_id=product.pk,
            payload={
                "product_id": product.pk,
                "name": product.name,
                "old_price": str(old_price),
                "new_price": str(product.price),
            },
        )
    if old_stock <= 0 < product.stock_quantity:
        product_back_in_stock_record(
            product_id=product.pk, name=product.name, stock_quantity=product.stock_quantity
        )


def product_back_in_stock_record(*, product_id: int, name: str, stock_quantity: int) -> None:
    events.event_record(
        event_type=events.PRODUCT_BACK_IN_STOCK,
        aggregate_type="product",
        aggregate_id=product_id,
        payload={"product_id": product_id, "name": name, "stock_quantity": stock_quantity},
    )


def product_delete(*, product: Product) -> None:
    """Deletes a product; one that appears on an order raises ProtectedError."""
    product_id = product.pk
    product.delete()
    product_cache_invalidate(product_ids=[product_id])
