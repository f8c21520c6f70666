"""Writes the request paths of the catalog benchmark, from the seeded database.

Run with the benchmark's production environment (it reads the database):

    python -m bench.catalog_paths <folder>

Files, one path per line:
  uncached_list.txt   20,000 list pages, each a random filter combination and a
                      random cursor (a real product's position in that ordering)
  detail.txt          20,000 random product ids
  page_1.txt          the default list's first page
  page_5000.txt       the default list's page 5,000 (20 per page): its cursor is
                      the position of the last row of page 4,999, exactly what
                      that page's `next` link carries
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import django


def _cursor(ordering: tuple[str, ...], values: list[Any]) -> str:
    from emporium.core.pagination import _encode_value

    payload = {
        "f": hashlib.sha256(",".join(ordering).encode()).hexdigest()[:8],
        "v": [_encode_value(value) for value in values],
        "d": "n",
    }
    token = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
    return token.decode().rstrip("=")


def _position(row: Any, ordering: tuple[str, ...]) -> list[Any]:
    return [getattr(row, field.lstrip("-")) for field in ordering]


def main() -> None:
    django.setup()
    from emporium.catalog.models import Category, Product
    from emporium.catalog.selectors import DEFAULT_PRODUCT_ORDERING, PRODUCT_ORDERINGS

    folder = Path(sys.argv[1])
    rng = random.Random(20_261_122)
    category_ids = list(Category.objects.values_list("id", flat=True))
    product_ids = list(Product.objects.values_list("id", flat=True))
    sample = {
        product.id: product
        for product in Product.objects.filter(id__in=rng.sample(product_ids, 5_000)).only(
            "id", "price", "name", "created_at"
        )
    }
    sample_rows = list(sample.values())

    paths = []
    for _ in range(20_000):
        ordering_name = rng.choice(list(PRODUCT_ORDERINGS))
        params: dict[str, str] = {"ordering": ordering_name}
        if rng.random() < 0.6:
            params["category"] = str(rng.choice(category_ids))
        if rng.random() < 0.4:
            low = Decimal(rng.randint(2, 600))
            params["min_price"] = str(low)
            if rng.random() < 0.5:
                params["max_price"] = str(low + rng.randint(5, 400))
        if rng.random() < 0.3:
            params["in_stock"] = "true"
        if rng.random() < 0.9:  # a few first pages too
            ordering = PRODUCT_ORDERINGS[ordering_name]
            params["cursor"] = _cursor(ordering, _position(rng.choice(sample_rows), ordering))
        paths.append(f"/api/products/?{urlencode(params)}")
    (folder / "uncached_list.txt").write_text("\n".join(paths) + "\n")

    details = [f"/api/products/{rng.choice(product_ids)}/" for _ in range(20_000)]
    (folder / "detail.txt").write_text("\n".join(details) + "\n")

    ordering = PRODUCT_ORDERINGS[DEFAULT_PRODUCT_ORDERING]
    page_size, page = 20, 5_000
    boundary = Product.objects.order_by(*ordering).only("id", "created_at")[
        (page - 1) * page_size - 1
    ]
    (folder / "page_1.txt").write_text("/api/products/\n")
    deep_cursor = _cursor(ordering, _position(boundary, ordering))
    (folder / "page_5000.txt").write_text(f"/api/products/?{urlencode({'cursor': deep_cursor})}\n")


if __name__ == "__main__":
    main()
