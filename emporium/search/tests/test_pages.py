"""The server-rendered search page and product page."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from emporium.core.tests.factories import CategoryFactory, ProductFactory, UserFactory, make_review
from emporium.search.views import BUNDLE

pytestmark = pytest.mark.django_db


def bundle_built() -> bool:
    return finders.find(BUNDLE) is not None


def test_empty_page_shows_the_form(client: Client) -> None:
    response = client.get("/search/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<label for="q">Search products</label>' in html
    assert 'role="search"' in html
    assert 'aria-live="polite"' in html
    assert 'role="listbox"' in html  # the autocomplete's list, empty until typed into
    # The one script is the autocomplete's own file, when it is built: nothing
    # inline (the Content-Security-Policy allows none) and nothing from outside.
    scripts = re.findall(r"<script[^>]*>", html)
    expected = ['<script src="/static/search/build/search.js" defer>'] if bundle_built() else []
    assert scripts == expected


def test_results_show_highlights_price_rating_stock(client: Client) -> None:
    category = CategoryFactory(name="Audio")
    product = ProductFactory(
        name="Studio <b>Headphones</b>",
        description="Closed-back headphones.",
        price=Decimal("129.90"),
        stock_quantity=0,
        category=category,
    )
    make_review(product=product, user=UserFactory(), rating=4)
    response = client.get("/search/", {"q": "headphones"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 product found." in html
    assert (
        f'<a href="/products/{product.pk}/">Studio &lt;b&gt;<mark>Headphones</mark>&lt;/b&gt;</a>'
        in html
    )
    assert "Closed-back <mark>headphones</mark>." in html
    assert "129.90" in html
    assert "4.00 of 5 (1 review)" in html
    assert "Out of stock" in html
    assert "<b>" not in html


def test_filters_and_pagination_links_keep_the_query(client: Client) -> None:
    category = CategoryFactory(name="Beds")
    ProductFactory.create_batch(3, name="Pillow", description="", category=category)
    response = client.get("/search/", {"q": "pillow", "category": category.pk, "page_size": 2})
    html = response.content.decode()
    assert f'<option value="{category.pk}" selected>Beds</option>' in html
    assert f'href="?q=pillow&amp;category={category.pk}&amp;page_size=2&amp;page=2"' in html
    second = client.get(
        "/search/", {"q": "pillow", "category": category.pk, "page_size": 2, "page": 2}
    )
    assert 'rel="prev"' in second.content.decode()
    assert '<ol class="results" start="3">' in second.content.decode()


def test_no_results_suggest_similar_names(client: Client) -> None:
    garden = CategoryFactory(name="Garden")
    ProductFactory(name="Saucepan", description="")
    response = client.get("/search/", {"q": "saucepna", "category": garden.pk})
    html = response.content.decode()
    assert "No products match your search." in html
    # PostgreSQL suggests the corrected spelling, SQLite the product's name.
    assert re.search(r'<a href="\?q=saucepan">saucepan</a>', html, re.IGNORECASE)


@pytest.mark.parametrize(
    "params",
    [{"q": "x" * 1000}, {"q": "lamp", "page": "0"}, {"q": "lamp", "category": "999999"}],
)
def test_bad_input_is_explained_not_a_500(client: Client, params: dict[str, str]) -> None:
    response = client.get("/search/", params)
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()


def test_odd_query_renders(client: Client) -> None:
    response = client.get("/search/", {"q": "'; DROP TABLE catalog_product; --"})
    assert response.status_code == 200


def test_product_page(client: Client) -> None:
    product = ProductFactory(name="Kettle", description="Boils <water>", sku="KET-1")
    response = client.get(f"/products/{product.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<h1 id="product-name">Kettle</h1>' in html
    assert "Boils &lt;water&gt;" in html
    assert client.get("/products/999999/").status_code == 404


def test_stylesheet_is_served_locally(client: Client) -> None:
    html = client.get("/search/").content.decode()
    assert 'href="/static/search/search.css"' in html
    assert "http://" not in html
    assert "https://" not in html
