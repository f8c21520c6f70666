"""The search page in a real headless Chromium (Debian's), driven by Playwright.

Skips where Chromium is not installed, and fails there instead when
EMPORIUM_REQUIRE_SERVICES=1 (CI installs it).
"""

from __future__ import annotations

from typing import Any

import pytest

from emporium.core.tests.factories import CategoryFactory, ProductFactory
from tests.support.browser import browser_page


@pytest.mark.django_db(transaction=True)
def test_type_a_query_see_highlights_and_follow_a_result(live_server: Any) -> None:
    category = CategoryFactory(name="Audio")
    product = ProductFactory(
        name="Wireless Headphones",
        description="Noise-cancelling headphones with a long battery life.",
        category=category,
    )
    ProductFactory(name="Desk lamp", description="Warm light.", category=category)

    with browser_page() as (page, problems):
        page.goto(f"{live_server.url}/search/")
        page.get_by_label("Search products").fill("wireless headph")
        page.get_by_role("button", name="Search").click()
        page.wait_for_url("**/search/?q=wireless+headph*")

        status = page.get_by_role("status")
        assert status.inner_text().strip() == "1 product found."
        link = page.locator("ol.results li a").first
        assert link.inner_html() == "<mark>Wireless</mark> <mark>Headphones</mark>"
        assert page.locator("mark").count() >= 3  # name, and the snippet's "headphones"

        link.click()
        page.wait_for_url(f"**/products/{product.pk}/")
        assert page.get_by_role("heading", level=1).inner_text() == "Wireless Headphones"
        assert page.get_by_text("Noise-cancelling headphones").is_visible()
        # The stylesheet loaded under the CSP (no inline styles or scripts needed).
        max_width = page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth")
        assert max_width != "none"
    assert problems == []
