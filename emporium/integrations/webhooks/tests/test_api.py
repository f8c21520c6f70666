"""The subscriptions API: staff only, the secret shown once and sealed, bad input refused whole."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from emporium.accounts.roles import Role
from emporium.integrations.webhooks import addresses
from emporium.integrations.webhooks.models import WebhookDelivery, WebhookSubscription
from emporium.integrations.webhooks.tests.conftest import (
    PRODUCTION_TARGETS,
    account_new,
    client_for,
    deliveries_for,
    event_new,
    send_all,
)
from emporium.integrations.webhooks.tests.receiver import running_receiver

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_retries")]


@pytest.fixture
def staff() -> Any:
    return client_for(account_new(staff=True))


def test_staff_create_a_subscription_and_see_its_secret_only_once(staff: Any) -> None:
    created = staff.post(
        "/api/webhooks/",
        {"url": "http://127.0.0.1:9/hooks", "event_types": ["order.paid", "order.shipped"]},
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["event_types"] == ["order.paid", "order.shipped"]
    assert (body["is_active"], body["signing_secrets"]) == (True, 1)
    shown = staff.get(f"/api/webhooks/{body['id']}/").json()
    assert "secret" not in shown
    # Sealed at rest: the column holds an envelope, never the secret.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret FROM webhooks_webhooksubscription WHERE id = %s", [body["id"]]
        )
        (stored,) = cursor.fetchone()
    assert stored.startswith("v1:")
    assert body["secret"] not in stored


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"url": "http://127.0.0.1:9/", "event_types": ["order.exploded"]}, "unknown_event_type"),
        ({"url": "http://127.0.0.1:9/", "event_types": []}, "validation_error"),
        ({"url": "ftp://127.0.0.1/", "event_types": ["order.paid"]}, "webhook_target_refused"),
        ({"event_types": ["order.paid"]}, "validation_error"),
        ({"url": "http://[::1/", "event_types": ["order.paid"]}, "webhook_target_refused"),
        ({"url": "https://", "event_types": ["order.paid"]}, "webhook_target_refused"),
        (
            {"url": "http://127.0.0.1:99999/", "event_types": ["order.paid"]},
            "webhook_target_refused",
        ),
    ],
    ids=["unknown-event", "no-events", "not-http", "no-url", "broken-ipv6", "no-host", "bad-port"],
)
def test_bad_input_is_a_400_in_the_error_shape_and_writes_nothing(
    staff: Any, payload: dict[str, Any], code: str
) -> None:
    response = staff.post("/api/webhooks/", payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert WebhookSubscription.objects.count() == 0


def test_unknown_event_types_are_named(staff: Any) -> None:
    response = staff.post(
        "/api/webhooks/",
        {"url": "http://127.0.0.1:9/", "event_types": ["order.paid", "nope", "also.nope"]},
        format="json",
    )
    assert response.json()["error"]["details"]["unknown"] == ["also.nope", "nope"]


def test_customers_and_anonymous_callers_are_refused(api_client: Any) -> None:
    customer = client_for(account_new())
    support = client_for(account_new(staff=True, role=Role.SUPPORT))
    payload = {"url": "http://127.0.0.1:9/", "event_types": ["order.paid"]}

    assert customer.get("/api/webhooks/").status_code == 403
    assert customer.post("/api/webhooks/", payload, format="json").status_code == 403
    assert support.post("/api/webhooks/", payload, format="json").status_code == 403
    assert api_client.get("/api/webhooks/").status_code == 401
    assert WebhookSubscription.objects.count() == 0


def test_rotation_answers_the_new_secret_and_counts_two_signers(staff: Any) -> None:
    created = staff.post(
        "/api/webhooks/", {"url": "http://127.0.0.1:9/", "event_types": ["order.paid"]}, "json"
    ).json()

    rotated = staff.post(
        f"/api/webhooks/{created['id']}/rotate-secret/", {"grace_seconds": 600}, format="json"
    )

    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (created["secret"], None)
    assert rotated.json()["signing_secrets"] == 2
    too_long = staff.post(
        f"/api/webhooks/{created['id']}/rotate-secret/", {"grace_seconds": 10**9}, format="json"
    )
    assert too_long.status_code == 400


def test_update_and_delete(staff: Any) -> None:
    created = staff.post(
        "/api/webhooks/", {"url": "http://127.0.0.1:9/", "event_types": ["order.paid"]}, "json"
    ).json()

    patched = staff.patch(
        f"/api/webhooks/{created['id']}/",
        {"event_types": ["stock.low"], "is_active": False},
        "json",
    )
    refused = staff.patch(f"/api/webhooks/{created['id']}/", {"event_types": ["x"]}, "json")

    assert patched.status_code == 200
    assert (patched.json()["event_types"], patched.json()["is_active"]) == (["stock.low"], False)
    assert refused.status_code == 400
    assert WebhookSubscription.objects.get().event_types == ["stock.low"]
    assert staff.delete(f"/api/webhooks/{created['id']}/").status_code == 204
    assert WebhookSubscription.objects.count() == 0


def test_the_delivery_log_and_a_replay(staff: Any) -> None:
    with running_receiver() as receiver:
        created = staff.post(
            "/api/webhooks/", {"url": receiver.url, "event_types": ["order.paid"]}, "json"
        ).json()
        receiver.secrets.append(created["secret"])
        event = event_new(payload={"order_id": 3})
        receiver.plan[str(event.id)] = [(500, {})]
        (delivery_id,) = deliveries_for(event)
        send_all()

        log = staff.get(f"/api/webhooks/{created['id']}/deliveries/")
        replay = staff.post(f"/api/webhooks/{created['id']}/deliveries/{delivery_id}/replay/")
        send_all()

    assert log.status_code == 200
    (entry,) = log.json()["results"]
    assert (entry["id"], entry["status"], entry["attempts"]) == (delivery_id, "delivered", 2)
    assert entry["request_body"]["data"] == {"order_id": 3}
    assert [a["response_status"] for a in entry["log"]] == [500, 200]
    assert entry["log"][0]["response_body"] == '{"error": "on purpose"}'
    assert entry["log"][1]["latency_ms"] is not None
    assert replay.status_code == 202
    # The receiver got the same event again, with the same body.
    bodies = [r.body for r in receiver.requests_for(str(event.id)) if r.answered == 200]
    assert len(bodies) == 2
    assert bodies[0] == bodies[1]
    assert WebhookDelivery.objects.get(pk=delivery_id).log.count() == 3


def test_replaying_a_pending_delivery_is_a_conflict_and_another_subscriptions_a_404(
    staff: Any,
) -> None:
    first = staff.post(
        "/api/webhooks/", {"url": "http://127.0.0.1:9/", "event_types": ["order.paid"]}, "json"
    ).json()
    second = staff.post(
        "/api/webhooks/", {"url": "http://127.0.0.1:9/", "event_types": ["stock.low"]}, "json"
    ).json()
    (delivery_id,) = deliveries_for(event_new())

    assert (
        staff.post(f"/api/webhooks/{first['id']}/deliveries/{delivery_id}/replay/").json()["error"][
            "code"
        ]
        == "conflict"
    )
    assert (
        staff.post(f"/api/webhooks/{second['id']}/deliveries/{delivery_id}/replay/").status_code
        == 404
    )
    assert staff.get("/api/webhooks/999999/deliveries/").status_code == 404


# -- SSRF: what production refuses ----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.1.10/hooks",
        "https://172.16.0.1/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://[fd00::1]/hooks",
        "https://0.0.0.0/hooks",
        "https://localhost/hooks",  # a host name that resolves to a loopback address
        "http://203.0.113.7/hooks",  # not https
    ],
)
def test_production_refuses_non_public_targets(staff: Any, url: str) -> None:
    with override_settings(**PRODUCTION_TARGETS):
        response = staff.post("/api/webhooks/", {"url": url, "event_types": ["order.paid"]}, "json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "webhook_target_refused"
    assert WebhookSubscription.objects.count() == 0


def test_a_host_name_resolving_to_a_private_address_is_refused(
    staff: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.example.com":  # as a hostile DNS zone would answer
            return real("10.0.0.5", *args, **kwargs) + real("93.184.216.34", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(addresses.socket, "getaddrinfo", resolve)
    with override_settings(**PRODUCTION_TARGETS):
        response = staff.post(
            "/api/webhooks/",
            {"url": "https://hooks.example.com/", "event_types": ["order.paid"]},
            "json",
        )

    assert response.status_code == 400
    assert "10.0.0.5" in response.json()["error"]["message"]


def test_a_public_address_is_accepted_in_production(staff: Any) -> None:
    with override_settings(**PRODUCTION_TARGETS):
        response = staff.post(
            "/api/webhooks/",
            {"url": "https://93.184.216.34/hooks", "event_types": ["order.paid"]},
            "json",
        )
    assert response.status_code == 201


def test_the_address_is_checked_again_when_sending(staff: Any) -> None:
    """A subscription saved while its host was public, which now resolves to loopback."""
    with running_receiver() as receiver:
        created = staff.post(
            "/api/webhooks/", {"url": receiver.url, "event_types": ["order.paid"]}, "json"
        ).json()
        receiver.secrets.append(created["secret"])
        (delivery_id,) = deliveries_for(event_new())

        with override_settings(**PRODUCTION_TARGETS):
            send_all()

    assert receiver.received == []
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == "failed"
    assert delivery.last_error.startswith("refused: The host '127.0.0.1' resolves to a non-public")
