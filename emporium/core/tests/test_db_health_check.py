"""The PostgreSQL health check: no round trip, and a server-closed connection is replaced."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_connection(database_url: str) -> Iterator[BaseDatabaseWrapper]:
    """A connection of our own, outside the test's transaction, with the project's settings."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


def test_the_backend_is_the_project_one(own_connection: BaseDatabaseWrapper) -> None:
    assert type(own_connection).__module__ == "emporium.core.db_backends.postgresql.base"


def test_a_healthy_idle_connection_is_usable_without_asking_the_server(
    own_connection: BaseDatabaseWrapper, database_url: str
) -> None:
    pid = own_connection.connection.info.backend_pid
    with psycopg.connect(database_url, autocommit=True) as observer:
        before = observer.execute(
            "SELECT state_change FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()
        assert own_connection.is_usable()
        assert own_connection.is_usable()
        after = observer.execute(
            "SELECT state_change FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()

    assert before is not None
    assert after == before  # a SELECT 1 would have moved the backend's state_change


def test_a_connection_the_server_closed_is_unusable_and_is_replaced(
    own_connection: BaseDatabaseWrapper, database_url: str
) -> None:
    pid = own_connection.connection.info.backend_pid
    with psycopg.connect(database_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    deadline = time.monotonic() + 5
    while own_connection.is_usable() and time.monotonic() < deadline:
        time.sleep(0.01)

    assert not own_connection.is_usable()

    # What Django does at the start of a request: drop it, then connect anew.
    own_connection.health_check_enabled = True
    own_connection.health_check_done = False
    own_connection.close_if_unusable_or_obsolete()
    with own_connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (new_pid,) = cursor.fetchone()

    assert new_pid != pid


def test_mid_transaction_the_server_is_asked(own_connection: BaseDatabaseWrapper) -> None:
    own_connection.set_autocommit(False)
    try:
        with own_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert own_connection.is_usable()
    finally:
        own_connection.rollback()
        own_connection.set_autocommit(True)
