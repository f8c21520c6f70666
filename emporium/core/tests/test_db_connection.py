"""Connection tuning: every PostgreSQL connection gets the same settings as Django receives it.

Ingestion and the catalog's prepared reads share Django's connection; neither
tunes it. What the server keeps is read from ``pg_prepared_statements``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import override_settings

from emporium.core.db.connection import PREPARE_ONLY_WHEN_ASKED, PREPARED_MAX, server_cursor
from emporium.core.db.prepared import fetch_prepared
from emporium.delivery.tests.support import (
    device_client,
    make_device,
    point,
    post_json,
    recent_minute,
)

# More distinct statements than psycopg keeps by default (100).
MORE_THAN_PSYCOPGS_DEFAULT = 150


def assert_tuned(raw: Any) -> None:
    assert (raw.prepare_threshold, raw.prepared_max) == (PREPARE_ONLY_WHEN_ASKED, PREPARED_MAX)


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def own_connection(database_url: str) -> Iterator[BaseDatabaseWrapper]:
    wrapper = connections.create_connection("default")
    yield wrapper
    wrapper.close()


@pytest.fixture
def pooled_connection(database_url: str) -> Iterator[BaseDatabaseWrapper]:
    """A wrapper lending the one connection of a pool of its own."""
    settings_dict = {
        **connections["default"].settings_dict,
        "OPTIONS": {
            **connections["default"].settings_dict["OPTIONS"],
            "pool": {"min_size": 1, "max_size": 1},
        },
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
    }
    wrapper_class = type(connections["default"])
    wrapper: Any = wrapper_class(settings_dict, alias=f"pooled_{uuid.uuid4().hex}")
    yield wrapper
    wrapper.close()
    wrapper.close_pool()


@pytest.mark.django_db
def test_a_new_connection_is_tuned_before_its_first_query(
    own_connection: BaseDatabaseWrapper,
) -> None:
    own_connection.ensure_connection()

    assert_tuned(own_connection.connection)


@pytest.mark.django_db
def test_a_connection_lent_by_the_pool_is_tuned_each_time(
    pooled_connection: BaseDatabaseWrapper,
) -> None:
    pooled_connection.ensure_connection()
    raw = pooled_connection.connection
    assert_tuned(raw)
    raw.prepared_max = 7  # as if some code had changed it while it was lent
    pooled_connection.close()  # back to the pool

    pooled_connection.ensure_connection()

    assert pooled_connection.connection is raw  # the pool's only connection, lent again
    assert_tuned(raw)


@pytest.mark.django_db
def test_with_prepared_statements_off_a_new_connection_prepares_nothing(
    own_connection: BaseDatabaseWrapper,
) -> None:
    with override_settings(DATABASE_PREPARED_STATEMENTS=False):
        own_connection.ensure_connection()

    assert own_connection.connection.prepare_threshold is None


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_ingested_telemetry_first_keeps_the_catalogs_settings(
    database_url: str,
) -> None:
    device, token = make_device()  # before the connection is renewed: no telemetry yet
    connection.close()
    start = recent_minute()

    response = post_json(
        device_client(token),
        [point(device, start + timedelta(seconds=second)) for second in (1, 2, 3)],
    )

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 3
    assert_tuned(connection.connection)
    assert any(
        statement.lstrip().startswith("WITH batch AS") for statement in prepared_statements()
    )
    marker = f"marker_{uuid.uuid4().hex}"
    for index in range(MORE_THAN_PSYCOPGS_DEFAULT):
        assert fetch_prepared(f"SELECT %s::int AS {marker}_{index}", [index]) == [(index,)]
    kept = [statement for statement in prepared_statements() if marker in statement]
    assert len(kept) == MORE_THAN_PSYCOPGS_DEFAULT


@pytest.mark.django_db
def test_the_server_cursor_is_counted_and_binds_on_the_server(
    database_url: str, django_assert_num_queries: Any
) -> None:
    marker = f"marker_{uuid.uuid4().hex}"

    with django_assert_num_queries(1) as captured, server_cursor() as cursor:
        cursor.execute(f"SELECT %s::text AS {marker}", ["x"])
        assert cursor.fetchall() == [("x",)]

    assert marker in captured.captured_queries[0]["sql"]
    assert f"SELECT $1::text AS {marker}" in prepared_statements()
