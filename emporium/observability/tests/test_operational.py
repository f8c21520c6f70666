"""The probes and the scrape are answered whatever Host the prober or scraper sends;
every other path still has its Host validated, and the views keep their answers."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from emporium.observability.operational import OPERATIONAL_PATHS

pytestmark = pytest.mark.django_db

# What a kubelet or Prometheus sends: the address or name it discovered.
DISCOVERED_HOST = "10.42.0.17:8000"


@override_settings(ALLOWED_HOSTS=["shop.example.com"])
@pytest.mark.parametrize("path", sorted(OPERATIONAL_PATHS))
def test_probes_and_the_scrape_answer_a_host_outside_allowed_hosts(
    client: Client, path: str
) -> None:
    response = client.get(path, HTTP_HOST=DISCOVERED_HOST, REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 200, response.content


@override_settings(ALLOWED_HOSTS=["shop.example.com"])
def test_every_other_path_still_refuses_a_host_outside_allowed_hosts(client: Client) -> None:
    assert client.get("/api/categories/", HTTP_HOST=DISCOVERED_HOST).status_code == 400
    assert client.get("/api/categories/", HTTP_HOST="shop.example.com").status_code == 200


@override_settings(ALLOWED_HOSTS=["shop.example.com"])
def test_their_refusals_keep_the_one_error_shape(client: Client) -> None:
    refused = client.get("/metrics", HTTP_HOST=DISCOVERED_HOST, REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"

    posted = client.post("/healthz", HTTP_HOST=DISCOVERED_HOST)
    assert posted.status_code == 405
    assert posted.json()["error"]["code"] == "method_not_allowed"


def test_they_carry_no_request_id_and_no_session_cookie(client: Client) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID="probe-1")

    assert response.status_code == 200
    assert not response.cookies
