"""Who may see /dashboard/, the staff sign-in, and what the page is made of."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from emporium.accounts.roles import Role
from emporium.core.tests.factories import PASSWORD, StaffFactory, UserFactory
from emporium.core.throttling import LoginIPThrottle
from emporium.dashboard.views import BUNDLE

pytestmark = pytest.mark.django_db

DASHBOARD_URL = "/dashboard/"
LOGIN_URL = "/dashboard/login/"


def test_anonymous_visitors_are_sent_to_the_sign_in_page(client: Client) -> None:
    response = client.get(DASHBOARD_URL)

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/login/?next=/dashboard/"


def test_a_signed_in_customer_gets_a_plain_403_page(client: Client) -> None:
    customer = UserFactory(username="carol")
    client.force_login(customer)

    response = client.get(DASHBOARD_URL)

    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert "Staff only" in body
    assert "carol" in body
    assert "/ws/dashboard/" not in body


def test_staff_get_the_page(client: Client) -> None:
    client.force_login(StaffFactory())

    response = client.get(DASHBOARD_URL)

    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-socket-path="/ws/dashboard/"' in body
    assert 'id="positions-map"' in body
    assert len(re.findall(r"<canvas id=\"chart-", body)) == 5
    assert "no-store" in response["Cache-Control"]


def test_the_page_fits_the_content_security_policy(client: Client) -> None:
    """No inline scripts or handlers, nothing from another origin."""
    client.force_login(StaffFactory())

    response = client.get(DASHBOARD_URL)

    directives = dict(
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    )
    script_sources = directives.get("script-src", directives["default-src"])
    assert script_sources == "'self'"
    body = response.content.decode()
    scripts = re.findall(r"<script\b[^>]*>", body)
    assert all(' src="/static/' in tag for tag in scripts)
    assert re.search(r"\son[a-z]+=", body) is None
    assert re.search(r"(src|href)=\"(https?:)?//", body) is None


def test_the_script_tag_is_there_exactly_when_the_bundle_is_built(client: Client) -> None:
    client.force_login(StaffFactory())

    body = client.get(DASHBOARD_URL).content.decode()

    if finders.find(BUNDLE):
        assert f'<script src="/static/{BUNDLE}" defer></script>' in body
        assert "make frontend" not in body
    else:
        assert "<script" not in body
        assert "make frontend" in body


def test_other_methods_are_refused(client: Client) -> None:
    client.force_login(StaffFactory())

    assert client.post(DASHBOARD_URL).status_code == 405


def test_staff_sign_in_through_the_form_and_land_on_the_dashboard(client: Client) -> None:
    staff = StaffFactory(username="sam")

    page = client.get(LOGIN_URL + "?next=/dashboard/")
    assert page.status_code == 200
    assert 'name="next" value="/dashboard/"' in page.content.decode()

    response = client.post(
        LOGIN_URL, {"username": "sam", "password": PASSWORD, "next": "/dashboard/"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    assert client.session["_auth_user_id"] == str(staff.pk)
    assert client.get(DASHBOARD_URL).status_code == 200


def test_sign_in_without_next_lands_on_the_dashboard(client: Client) -> None:
    StaffFactory(username="sam")

    response = client.post(LOGIN_URL, {"username": "sam", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_a_customer_cannot_sign_in_through_the_dashboard_form(client: Client) -> None:
    UserFactory(username="carol")

    response = client.post(LOGIN_URL, {"username": "carol", "password": PASSWORD})

    assert response.status_code == 200
    assert "not a staff account" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_wrong_password_is_refused(client: Client) -> None:
    StaffFactory(username="sam")

    response = client.post(LOGIN_URL, {"username": "sam", "password": "wrong"})

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_an_offsite_next_is_not_followed(client: Client) -> None:
    StaffFactory(username="sam")

    response = client.post(
        LOGIN_URL, {"username": "sam", "password": PASSWORD, "next": "https://evil.example/"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_sign_in_needs_the_csrf_token() -> None:
    StaffFactory(username="sam")
    client = Client(enforce_csrf_checks=True)

    response = client.post(LOGIN_URL, {"username": "sam", "password": PASSWORD})

    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_sign_out_ends_the_session(client: Client) -> None:
    client.force_login(StaffFactory())

    response = client.post("/dashboard/logout/")

    assert response.status_code == 302
    assert response["Location"] == LOGIN_URL
    assert client.get(DASHBOARD_URL).status_code == 302


def test_sign_in_attempts_share_the_api_logins_limit_per_account(client: Client) -> None:
    """Five tries a minute per username (THROTTLE_LOGIN_ACCOUNT), form and API together."""
    StaffFactory(username="sam")
    for _ in range(3):
        client.post(LOGIN_URL, {"username": "sam", "password": "wrong"})
    for _ in range(2):
        api = client.post(
            "/api/auth/login/",
            {"username": "sam", "password": "wrong"},
            content_type="application/json",
        )
        assert api.status_code == 401

    response = client.post(LOGIN_URL, {"username": "sam", "password": PASSWORD})

    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_body_that_is_not_a_form_is_an_invalid_form(client: Client) -> None:
    StaffFactory(username="sam")

    response = client.post(
        LOGIN_URL, {"username": "sam", "password": PASSWORD}, content_type="application/json"
    )

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_form_and_the_api_share_the_per_address_counter(client: Client) -> None:
    """The address limit (THROTTLE_LOGIN_IP) counts the form and the API together, both ways."""
    limit, _ = LoginIPThrottle().parse_rate(LoginIPThrottle().get_rate())
    assert limit is not None
    StaffFactory(username="sam")
    # Distinct usernames, so that only the address counter fills up; half through each door.
    for attempt in range(limit):
        credentials = {"username": f"nobody-{attempt}", "password": "wrong"}
        if attempt % 2:
            response = client.post(LOGIN_URL, credentials)
            assert response.status_code == 200
        else:
            response = client.post("/api/auth/login/", credentials, content_type="application/json")
            assert response.status_code == 401

    form = client.post(LOGIN_URL, {"username": "sam", "password": PASSWORD})
    api = client.post(
        "/api/auth/login/",
        {"username": "sam", "password": PASSWORD},
        content_type="application/json",
    )

    assert form.status_code == 429
    assert int(form["Retry-After"]) >= 1
    assert "_auth_user_id" not in client.session
    assert api.status_code == 429
    assert api.json()["error"]["code"] == "throttled"


@pytest.mark.parametrize(
    ("make_user", "allowed"),
    [
        pytest.param(lambda: StaffFactory(role=Role.SUPPORT), True, id="support"),
        pytest.param(lambda: StaffFactory(role=Role.ADMIN), True, id="admin"),
        pytest.param(lambda: StaffFactory(role=Role.CATALOG_MANAGER), False, id="catalog-manager"),
        pytest.param(lambda: UserFactory(is_staff=True), False, id="is-staff-without-a-role"),
    ],
)
def test_the_page_and_its_sign_in_follow_the_view_dashboard_permission(
    client: Client, make_user: Any, allowed: bool
) -> None:
    """``dashboard.view_dashboard`` (support and admin roles) opens the page; is_staff does not."""
    user = make_user()

    signed_in = client.post(LOGIN_URL, {"username": user.username, "password": PASSWORD})
    client.force_login(user)
    page = client.get(DASHBOARD_URL)

    if allowed:
        assert signed_in.status_code == 302
        assert page.status_code == 200
        assert "/ws/dashboard/" in page.content.decode()
    else:
        assert signed_in.status_code == 200
        assert "not a staff account" in signed_in.content.decode()
        assert page.status_code == 403
        assert "/ws/dashboard/" not in page.content.decode()
