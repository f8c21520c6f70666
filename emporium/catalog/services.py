from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat, Substr

from emporium.catalog.models import MAX_CATEGORY_DEPTH, Category, Product
from emporium.core.errors import InvalidInput


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
    return category


def category_delete(*, category: Category) -> None:
    """Deletes an empty leaf; a category with children or products raises ProtectedError."""
    category.delete()


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
    return Product.objects.create(
        name=name,
        sku=sku,
        price=price,
        category=category,
        stock_quantity=stock_quantity,
        description=description,
        attributes=attributes or {},
    )


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
    unknown = set(changes) - set(PRODUCT_EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    fields = [field for field, value in changes.items() if getattr(product, field) != value]
    for field in fields:
        setattr(product, field, changes[field])
    if fields:
        product.save(update_fields=[*fields, "updated_at"])
    return product


def product_delete(*, product: Product) -> None:
    """Deletes a product; one that appears on an order raises ProtectedError."""
    product.delete()
