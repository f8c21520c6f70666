"""The search page in a real headless Chromium (Debian's), driven by Playwright.

Skips where Chromium is not installed, and fails there instead when
EMPORIUM_REQUIRE_SERVICES=1 (CI installs it).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.staticfiles import finders

from emporium.core.tests.factories import CategoryFactory, ProductFactory
from emporium.search.tests.support import REQUIRE_SERVICES
from emporium.search.views import BUNDLE
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
        if finders.find(BUNDLE) is not None:
            # The autocomplete asked about "headph": let its answer arrive, or
            # leaving the page would abort the request (a failed request here).
            listbox = page.get_by_role("listbox", name="Suggestions")
            listbox.get_by_role("option", name="wireless headphones").wait_for()
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


def _require_bundle() -> None:
    if finders.find(BUNDLE) is None:
        problem = f"the search script {BUNDLE} is not built (make frontend)"
        if REQUIRE_SERVICES:
            pytest.fail(f"EMPORIUM_REQUIRE_SERVICES=1 but {problem}")
        pytest.skip(problem)


@pytest.mark.django_db(transaction=True)
def test_autocomplete_as_typed_with_arrows_and_enter(live_server: Any) -> None:
    _require_bundle()
    lighting = CategoryFactory(name="Lighting")
    ProductFactory(name="Desk lamp", description="", category=lighting)
    ProductFactory(name="Brass lamp", description="", category=lighting)
    shade = ProductFactory(name="Linen lampshade", description="", category=lighting)

    with browser_page() as (page, problems):
        from playwright.sync_api import expect  # after browser_page found Playwright

        page.goto(f"{live_server.url}/search/")
        box = page.get_by_role("combobox", name="Search products")
        suggestions = page.get_by_role("listbox", name="Suggestions")
        options = suggestions.get_by_role("option")
        box.press_sequentially("lam", delay=60)
        expect(options).to_have_text(["lamp", "lampshade"])
        expect(box).to_have_attribute("aria-expanded", "true")

        # A typo after the first letters still completes.
        box.press("Backspace")
        box.press_sequentially("pm", delay=60)  # "lapm"
        expect(options).to_have_text(["lamp", "lampshade"])

        # Only the last word is asked for; the words before it stay.
        box.fill("")
        box.press_sequentially("linen lam", delay=60)
        expect(options).to_have_text(["linen lamp", "linen lampshade"])

        box.fill("")
        box.press_sequentially("lamps", delay=60)
        expect(options).to_have_text(["lampshade", "lamp"])  # "lamp": one letter less
        box.press("ArrowDown")
        expect(options.first).to_have_attribute("aria-selected", "true")
        expect(box).to_have_attribute("aria-activedescendant", "q-option-0")
        box.press("Enter")
        page.wait_for_url("**/search/?q=lampshade*")
        expect(page.get_by_role("status")).to_have_text("1 product found.")
        expect(page.locator("ol.results li a").first).to_have_attribute(
            "href", f"/products/{shade.pk}/"
        )

        # Escape closes the list; Enter with no option chosen submits the text.
        box.fill("")
        box.press_sequentially("desk", delay=60)
        expect(options).to_have_text(["desk"])
        box.press("Escape")
        expect(suggestions).to_be_hidden()
        box.press("Enter")
        page.wait_for_url("**/search/?q=desk*")
        expect(page.get_by_role("status")).to_have_text("1 product found.")
    assert problems == []
