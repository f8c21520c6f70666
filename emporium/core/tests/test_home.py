"""``/``: a small HTML page that links the places a new user looks for, with no external assets."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse


@pytest.mark.django_db
def test_the_home_page_links_the_docs_search_dashboard_and_admin() -> None:
    response: Any = Client().get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    links = set(re.findall(r'href="([^"]+)"', body))
    for name in ("api-docs", "search-page", "dashboard", "admin:index"):
        assert reverse(name) in links, name
    # Every link and asset stays on this server (data: is the empty favicon).
    assert all(link.startswith(("/", "data:")) for link in links), links
    assert "<script" not in body
    assert not re.search(r'src="(?!data:)', body)


@pytest.mark.django_db
def test_every_link_on_the_home_page_answers() -> None:
    client = Client()
    body = client.get("/").content.decode()
    for link in set(re.findall(r'href="(/[^"]*)"', body)):
        # The dashboard sends strangers to its sign-in page; the admin to its own.
        assert client.get(link).status_code in (200, 302), link
