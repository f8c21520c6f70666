"""The inbox API: pages newest first, unread filter and count, read marks, scoping, resync."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from emporium.core.tests.factories import UserFactory, client_for
from emporium.notifications.models import Notification, NotificationKind
from emporium.notifications.services import Message, inbox_add

pytestmark = pytest.mark.django_db


def fill(user, count: int, *, prefix: str = "n") -> list[Notification]:  # type: ignore[no-untyped-def]
    rows = []
    for number in range(count):
        row = inbox_add(
            message=Message(
                recipient_id=user.pk,
                kind=NotificationKind.ORDER_SHIPPED,
                title=f"{prefix}{number}",
                dedup_key=f"test:{prefix}{number}",
            )
        )
        assert row is not None
        rows.append(row)
    return rows


def test_list_is_newest_first_in_cursor_pages_and_only_mine() -> None:
    user, other = UserFactory(), UserFactory()
    fill(user, 5)
    fill(other, 2, prefix="theirs")
    api = client_for(user)

    first = api.get("/api/notifications/?page_size=2").json()
    assert [row["title"] for row in first["results"]] == ["n4", "n3"]
    second = api.get(first["next"]).json()
    assert [row["title"] for row in second["results"]] == ["n2", "n1"]
    third = api.get(second["next"]).json()
    assert [row["title"] for row in third["results"]] == ["n0"]
    assert third["next"] is None
    assert set(first["results"][0]) == {
        "id",
        "type",
        "kind",
        "title",
        "body",
        "data",
        "read_at",
        "created_at",
    }


def test_a_page_costs_the_same_number_of_queries_whatever_the_inbox_holds() -> None:
    user = UserFactory()
    fill(user, 3)
    api = client_for(user)
    api.get("/api/notifications/")  # warm the token's account cache
    with CaptureQueriesContext(connection) as small:
        api.get("/api/notifications/")
    fill(user, 30, prefix="more")
    with CaptureQueriesContext(connection) as large:
        response = api.get("/api/notifications/")
    assert response.status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries)


def test_unread_filter_count_and_marks() -> None:
    user = UserFactory()
    rows = fill(user, 4)
    api = client_for(user)
    assert api.get("/api/notifications/unread-count/").json() == {"unread": 4, "capped": False}

    read = api.post(f"/api/notifications/{rows[1].pk}/read/")
    assert read.status_code == 200
    assert read.json()["read_at"] is not None
    again = api.post(f"/api/notifications/{rows[1].pk}/read/")
    assert again.json()["read_at"] == read.json()["read_at"]  # reading twice changes nothing

    unread = api.get("/api/notifications/?unread=true").json()["results"]
    assert [row["title"] for row in unread] == ["n3", "n2", "n0"]
    assert api.get("/api/notifications/unread-count/").json()["unread"] == 3

    marked = api.post("/api/notifications/read-all/", {"up_to_id": rows[2].pk}, format="json")
    assert marked.json() == {"marked": 2}
    assert api.get("/api/notifications/unread-count/").json()["unread"] == 1
    assert api.post("/api/notifications/read-all/").json() == {"marked": 1}
    assert api.get("/api/notifications/unread-count/").json()["unread"] == 0


def test_unread_count_stops_at_the_cap(settings) -> None:  # type: ignore[no-untyped-def]
    settings.EMPORIUM_NOTIFICATIONS_UNREAD_COUNT_CAP = 3
    user = UserFactory()
    fill(user, 5)
    assert client_for(user).get("/api/notifications/unread-count/").json() == {
        "unread": 3,
        "capped": True,
    }


def test_another_users_notification_is_404_like_a_missing_one() -> None:
    owner, intruder = UserFactory(), UserFactory()
    [row] = fill(owner, 1)
    theirs = client_for(intruder).post(f"/api/notifications/{row.pk}/read/")
    missing = client_for(intruder).post(f"/api/notifications/{row.pk + 1000}/read/")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert theirs.json()["error"]["code"] == "not_found"
    row.refresh_from_db()
    assert row.read_at is None
    assert client_for(intruder).post("/api/notifications/read-all/").json() == {"marked": 0}
    row.refresh_from_db()
    assert row.read_at is None


def test_since_resyncs_oldest_first_like_the_socket() -> None:
    user = UserFactory()
    rows = fill(user, 3)
    api = client_for(user)
    body = api.get(f"/api/notifications/?since={rows[0].pk}&limit=1").json()
    assert [row["id"] for row in body["results"]] == [rows[1].pk]
    assert body["has_more"] is True
    assert api.get(f"/api/notifications/?since={rows[2].pk}").json() == {
        "results": [],
        "has_more": False,
    }
    for query in ["since=-1", "since=abc", "limit=0", "limit=501", "unread=maybe"]:
        response = api.get(f"/api/notifications/?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"]["code"] == "validation_error"


def test_the_inbox_needs_an_account() -> None:
    from rest_framework.test import APIClient

    assert APIClient().get("/api/notifications/").status_code == 401
