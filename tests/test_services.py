"""The production-profile servers are really used when configured."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from kombu import Connection, Exchange, Queue

from conftest import require_service


@pytest.mark.django_db
def test_database_is_postgresql_when_database_url_is_set() -> None:
    require_service("DATABASE_URL")
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        assert int(cursor.fetchone()[0]) >= 150000


def test_cache_round_trips_through_redis(redis_url: str) -> None:
    assert settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache"
    key = f"probe-{uuid.uuid4()}"
    cache.set(key, {"value": 42}, timeout=30)
    from django_redis import get_redis_connection

    raw_keys = get_redis_connection("default").keys(f"*{key}*")
    assert len(raw_keys) == 1  # the value really sits in Redis, not in process memory
    assert cache.get(key) == {"value": 42}


def test_broker_accepts_and_returns_a_message(broker_url: str) -> None:
    assert settings.CELERY_BROKER_URL == broker_url
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    queue_name = f"emporium.test.{uuid.uuid4()}"
    exchange = Exchange(queue_name, type="direct", durable=False, auto_delete=True)
    queue = Queue(queue_name, exchange, routing_key="probe", auto_delete=True, durable=False)
    with Connection(broker_url, connect_timeout=3) as conn:
        producer = conn.Producer()
        producer.publish({"n": 1}, exchange=exchange, routing_key="probe", declare=[queue])
        simple = conn.SimpleQueue(queue)
        message = simple.get(timeout=5)
        assert message.payload == {"n": 1}
        message.ack()
        simple.close()
