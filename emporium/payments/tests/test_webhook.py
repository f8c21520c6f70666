"""POST /api/payments/webhook/: the provider's signed callbacks, verified and applied once."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from emporium.core.tests.factories import OrderFactory, PaymentFactory
from emporium.orders.models import Order, OrderStatusChange
from emporium.payments import services
from emporium.payments.gateway import PaymentDeclined, default_gateway
from emporium.payments.models import Payment, PaymentDiscrepancy, PaymentStatus
from simulators.payment_provider import SIGNATURE_HEADER, sign
from tests.support.processes import ProviderProcess, wait_until

URL = "/api/payments/webhook/"
SECRET = "webhook-test-secret"


def make_payment(*, token: str | None = None) -> Payment:
    order = OrderFactory(total_amount=Decimal("42.00"))
    return PaymentFactory(order=order, amount=Decimal("42.00"), provider_token=token or "tok_visa")


def succeeded_event(payment: Payment, charge_id: str = "ch_test_1") -> dict[str, Any]:
    return {
        "event_id": "evt_test_1",
        "type": "charge.succeeded",
        "data": {
            "id": charge_id,
            "amount": "42.00",
            "currency": "EUR",
            "reference": f"payment-{payment.pk}",
            "status": "succeeded",
        },
    }


def declined_event(payment: Payment, code: str = "insufficient_funds") -> dict[str, Any]:
    return {
        "event_id": "evt_test_2",
        "type": "charge.declined",
        "data": {
            "id": "ch_test_2",
            "amount": "42.00",
            "reference": f"payment-{payment.pk}",
            "status": "declined",
            "decline_code": code,
        },
    }


def deliver(
    body: bytes | dict[str, Any],
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    header = (
        signature if signature is not None else sign(secret, timestamp or int(time.time()), raw)
    )
    return APIClient().generic(
        "POST", URL, raw, content_type="application/json", headers={SIGNATURE_HEADER: header}
    )


def state(payment: Payment) -> tuple[Any, ...]:
    """What a callback may change: the payment, its order and the order's history."""
    payment.refresh_from_db()
    order = Order.objects.get(pk=payment.order_id)
    changes = list(
        OrderStatusChange.objects.filter(order=order).values_list("from_status", "to_status")
    )
    return (
        payment.status,
        payment.provider_reference,
        payment.failure_reason,
        order.order_status,
        changes,
    )


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": {}}}


INVALID_SIGNATURE = error(
    "invalid_signature", "The callback signature is missing, malformed or wrong."
)
STALE = error("stale_callback", "The callback is too old (or from the future) to be accepted.")
NOT_AN_EVENT = error("validation_error", "The callback body is not a provider event.")
PENDING_STATE = ("pending", "", "", "pending_payment", [])


@pytest.fixture(autouse=True)
def _secret(settings: Any) -> None:
    settings.PAYMENT_WEBHOOK_SECRET = SECRET
    settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS = 300


@pytest.mark.django_db
class TestApplying:
    def test_success_callback_settles_payment_and_order(self) -> None:
        payment = make_payment()

        response = deliver(succeeded_event(payment, "ch_abc"))

        assert response.status_code == 200
        assert response.json() == {"status": "applied"}
        assert state(payment) == (
            "succeeded",
            "ch_abc",
            "",
            "paid",
            [("pending_payment", "paid")],
        )

    def test_decline_callback_fails_payment_and_order(self) -> None:
        payment = make_payment()

        response = deliver(declined_event(payment, "stolen_card"))

        assert response.status_code == 200
        assert response.json() == {"status": "applied"}
        assert state(payment) == (
            "failed",
            "",
            "declined: stolen_card",
            "payment_failed",
            [("pending_payment", "payment_failed")],
        )

    def test_duplicate_callback_is_harmless(self) -> None:
        payment = make_payment()
        event = succeeded_event(payment)
        deliver(event)
        settled = state(payment)

        again = deliver(event)

        assert again.status_code == 200
        assert again.json() == {"status": "duplicate"}
        assert state(payment) == settled
        assert OrderStatusChange.objects.filter(order_id=payment.order_id).count() == 1

    def test_callback_after_the_task_settled_the_payment_is_a_duplicate(self) -> None:
        payment = make_payment()
        services.payment_mark_succeeded(payment_id=payment.pk, provider_reference="ch_task")
        settled = state(payment)

        response = deliver(succeeded_event(payment, "ch_task"))

        assert response.json() == {"status": "duplicate"}
        assert state(payment) == settled

    def test_a_late_decline_does_not_undo_a_success(self) -> None:
        payment = make_payment()
        deliver(succeeded_event(payment))
        settled = state(payment)

        response = deliver(declined_event(payment))

        assert response.json() == {"status": "duplicate"}
        assert state(payment) == settled

    @pytest.mark.parametrize(
        "reference",
        ["order-17", "payment-", "payment-abc", "payment-1-2", "", None, "payment-987654321"],
    )
    def test_unknown_reference_is_ignored(self, reference: str | None) -> None:
        payment = make_payment()
        event = succeeded_event(payment)
        event["data"]["reference"] = reference

        response = deliver(event)

        assert response.status_code == 200
        assert response.json() == {"status": "ignored"}
        assert state(payment) == PENDING_STATE

    def test_other_event_types_are_ignored(self) -> None:
        payment = make_payment()
        event = succeeded_event(payment)
        event["type"] = "charge.refunded"

        response = deliver(event)

        assert response.json() == {"status": "ignored"}
        assert state(payment) == PENDING_STATE


@pytest.mark.django_db
class TestRefusing:
    def test_wrong_secret_is_an_invalid_signature(self) -> None:
        payment = make_payment()

        response = deliver(succeeded_event(payment), secret="someone-elses-secret")

        assert response.status_code == 400
        assert response.json() == INVALID_SIGNATURE
        assert state(payment) == PENDING_STATE

    def test_body_changed_after_signing_is_an_invalid_signature(self) -> None:
        payment = make_payment()
        signed = json.dumps(declined_event(payment)).encode()
        tampered = json.dumps(succeeded_event(payment)).encode()

        response = deliver(tampered, signature=sign(SECRET, int(time.time()), signed))

        assert response.status_code == 400
        assert response.json() == INVALID_SIGNATURE
        assert state(payment) == PENDING_STATE

    def test_missing_signature_header_is_refused(self) -> None:
        payment = make_payment()

        response = APIClient().generic(
            "POST",
            URL,
            json.dumps(succeeded_event(payment)),
            content_type="application/json",
        )

        assert response.status_code == 400
        assert response.json() == INVALID_SIGNATURE
        assert state(payment) == PENDING_STATE

    @pytest.mark.parametrize(
        "header",
        ["", "garbage", "v1=abc", "t=,v1=abc", "t=notanumber,v1=abc", "t=1700000000"],
    )
    def test_malformed_signature_header_is_refused(self, header: str) -> None:
        payment = make_payment()

        response = deliver(succeeded_event(payment), signature=header)

        assert response.status_code == 400
        assert response.json() == INVALID_SIGNATURE
        assert state(payment) == PENDING_STATE

    def test_signature_with_the_time_changed_is_refused(self) -> None:
        payment = make_payment()
        raw = json.dumps(succeeded_event(payment)).encode()
        now = int(time.time())
        mac = sign(SECRET, now, raw).split(",")[1]

        response = deliver(raw, signature=f"t={now - 1},{mac}")

        assert response.status_code == 400
        assert response.json() == INVALID_SIGNATURE

    @pytest.mark.parametrize("age", [330, 3600, -330])
    def test_callback_outside_five_minutes_is_stale(self, age: int) -> None:
        payment = make_payment()

        response = deliver(succeeded_event(payment), timestamp=int(time.time()) - age)

        assert response.status_code == 400
        assert response.json() == STALE
        assert state(payment) == PENDING_STATE

    def test_callback_just_inside_five_minutes_is_accepted(self) -> None:
        payment = make_payment()

        response = deliver(succeeded_event(payment), timestamp=int(time.time()) - 270)

        assert response.status_code == 200
        assert response.json() == {"status": "applied"}

    @pytest.mark.parametrize(
        "raw",
        [
            b"{not json",
            b"",
            b'["charge.succeeded"]',
            b'{"data": {"reference": "payment-1"}}',
            b'{"type": "charge.succeeded"}',
            b'{"type": "charge.succeeded", "data": "payment-1"}',
        ],
        ids=["broken", "empty", "list", "no-type", "no-data", "data-not-object"],
    )
    def test_signed_body_that_is_not_an_event_is_invalid(self, raw: bytes) -> None:
        payment = make_payment()

        response = deliver(raw)

        assert response.status_code == 400
        assert response.json() == NOT_AN_EVENT
        assert state(payment) == PENDING_STATE

    def test_without_a_configured_secret_nothing_is_accepted(self, settings: Any) -> None:
        payment = make_payment()
        settings.PAYMENT_WEBHOOK_SECRET = None

        response = deliver(succeeded_event(payment))

        assert response.status_code == 503
        assert response.json() == error(
            "webhook_not_configured", "PAYMENT_WEBHOOK_SECRET is not set on this server."
        )
        assert state(payment) == PENDING_STATE

    def test_only_post_is_allowed(self) -> None:
        response = APIClient().get(URL)

        assert response.status_code == 405


# -- the simulator's real callback, over real HTTP ---------------------------------------


@pytest.fixture
def callbacks_to_live_server(
    live_server: Any, payment_provider: ProviderProcess, settings: Any
) -> ProviderProcess:
    settings.PAYMENT_CALLBACK_URL = f"{live_server.url}{URL}"
    settings.PAYMENT_WEBHOOK_SECRET = payment_provider.webhook_secret
    return payment_provider


def charge_without_settling(payment: Payment) -> str:
    """What the task does before settling; only the provider's callback can settle it here."""
    result = default_gateway().charge(
        idempotency_key=services.provider_idempotency_key(payment.pk),
        amount=payment.amount,
        currency="EUR",
        token=payment.provider_token,
        reference=f"payment-{payment.pk}",
    )
    return result.reference


def current_status(payment: Payment) -> str:
    return str(Payment.objects.get(pk=payment.pk).status)


@pytest.mark.django_db(transaction=True)
def test_simulator_success_callback_is_verified_and_applied(
    callbacks_to_live_server: ProviderProcess,
) -> None:
    payment = make_payment()

    charge_id = charge_without_settling(payment)

    assert wait_until(lambda: current_status(payment) != PaymentStatus.PENDING, timeout=10)
    assert state(payment) == (
        "succeeded",
        charge_id,
        "",
        "paid",
        [("pending_payment", "paid")],
    )


@pytest.mark.django_db(transaction=True)
def test_simulator_decline_callback_is_verified_and_applied(
    callbacks_to_live_server: ProviderProcess,
) -> None:
    payment = make_payment(token="tok_insufficient_funds")

    with pytest.raises(PaymentDeclined):
        charge_without_settling(payment)

    assert wait_until(lambda: current_status(payment) != PaymentStatus.PENDING, timeout=10)
    assert state(payment) == (
        "failed",
        "",
        "declined: insufficient_funds",
        "payment_failed",
        [("pending_payment", "payment_failed")],
    )


@pytest.mark.django_db(transaction=True)
def test_simulator_callback_with_another_secret_is_refused(
    callbacks_to_live_server: ProviderProcess, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.PAYMENT_WEBHOOK_SECRET = "not-the-providers-secret"
    payment = make_payment()

    charge_without_settling(payment)

    refused = f"Bad Request: {URL}"
    assert wait_until(
        lambda: any(record.getMessage() == refused for record in caplog.records), timeout=10
    )
    assert current_status(payment) == PaymentStatus.PENDING


# -- the charge must be the payment's amount in the payment's currency -------------------


def discrepancies(payment: Payment) -> list[tuple[str, str, Decimal, str, str, str, bool]]:
    return list(
        PaymentDiscrepancy.objects.filter(payment=payment).values_list(
            "kind",
            "provider_reference",
            "expected_amount",
            "expected_currency",
            "reported_amount",
            "reported_currency",
            "resolved",
        )
    )


def mismatch(expected: tuple[str, str], reported: tuple[str, str]) -> dict[str, Any]:
    return {
        "error": {
            "code": "charge_mismatch",
            "message": "The charge's amount or currency is not the payment's; it was not applied.",
            "details": {
                "expected": {"amount": expected[0], "currency": expected[1]},
                "reported": {"amount": reported[0], "currency": reported[1]},
            },
        }
    }


@pytest.mark.django_db
class TestChargeMismatch:
    @pytest.mark.parametrize(
        ("amount", "currency", "kind"),
        [
            ("0.01", "EUR", "amount"),
            ("42.01", "EUR", "amount"),
            ("4200", "EUR", "amount"),
            ("-42.00", "EUR", "amount"),
            ("42.00", "USD", "currency"),
            ("0.01", "USD", "amount_and_currency"),
        ],
    )
    def test_signed_success_for_another_charge_is_refused_and_recorded(
        self, amount: str, currency: str, kind: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        payment = make_payment()
        event = succeeded_event(payment, "ch_wrong")
        event["data"].update(amount=amount, currency=currency)

        response = deliver(event)

        assert response.status_code == 409
        assert response.json() == mismatch(("42.00", "EUR"), (amount, currency))
        assert state(payment) == PENDING_STATE
        assert discrepancies(payment) == [
            (kind, "ch_wrong", Decimal("42.00"), "EUR", amount, currency, False)
        ]
        warnings = [r for r in caplog.records if r.name == "emporium.payments.services"]
        assert [r.levelname for r in warnings] == ["WARNING"]
        assert warnings[0].getMessage() == (
            f"payment {payment.pk}: provider reported a charge of {amount} {currency}, "
            "expected 42.00 EUR; refused (recorded)"
        )

    def test_the_provider_retrying_a_refused_charge_records_it_once(self) -> None:
        payment = make_payment()
        event = succeeded_event(payment, "ch_wrong")
        event["data"]["amount"] = "0.01"

        first, again = deliver(event), deliver(event)

        assert (first.status_code, again.status_code) == (409, 409)
        assert again.json() == first.json()
        assert len(discrepancies(payment)) == 1
        assert state(payment) == PENDING_STATE

    def test_a_refused_charge_does_not_block_the_right_one(self) -> None:
        payment = make_payment()
        wrong = succeeded_event(payment, "ch_wrong")
        wrong["data"]["amount"] = "0.01"
        deliver(wrong)

        response = deliver(succeeded_event(payment, "ch_right"))

        assert response.json() == {"status": "applied"}
        assert state(payment) == (
            "succeeded",
            "ch_right",
            "",
            "paid",
            [("pending_payment", "paid")],
        )
        assert len(discrepancies(payment)) == 1

    def test_a_mismatch_about_a_settled_payment_is_still_recorded(self) -> None:
        payment = make_payment()
        deliver(succeeded_event(payment, "ch_right"))
        settled = state(payment)
        wrong = succeeded_event(payment, "ch_second")
        wrong["data"]["amount"] = "10.00"

        response = deliver(wrong)

        assert response.status_code == 409
        assert state(payment) == settled
        assert [row[:2] for row in discrepancies(payment)] == [("amount", "ch_second")]

    @pytest.mark.parametrize(
        ("amount", "currency"),
        [("42.00", "EUR"), ("42", "EUR"), ("42.000", "eur"), (42, "EUR"), (42.0, "EUR")],
        ids=["string", "no-cents", "more-digits-lowercase", "json-integer", "json-number"],
    )
    def test_the_same_amount_and_currency_however_written_settles(
        self, amount: Any, currency: str
    ) -> None:
        payment = make_payment()
        event = succeeded_event(payment, "ch_ok")
        event["data"].update(amount=amount, currency=currency)

        response = deliver(event)

        assert response.status_code == 200
        assert response.json() == {"status": "applied"}
        assert state(payment) == ("succeeded", "ch_ok", "", "paid", [("pending_payment", "paid")])
        assert discrepancies(payment) == []

    def test_a_json_number_close_to_the_amount_is_not_rounded_into_it(self) -> None:
        payment = make_payment()
        raw = (
            b'{"type": "charge.succeeded", "data": {"id": "ch_x", "amount": 41.999999999999999999,'
            b' "currency": "EUR", "reference": "payment-%d"}}' % payment.pk
        )

        response = deliver(raw)

        assert response.status_code == 409
        assert state(payment) == PENDING_STATE

    @pytest.mark.parametrize(
        ("amount", "currency"),
        [
            (None, "EUR"),
            ("NaN", "EUR"),
            ("Infinity", "EUR"),
            ("forty-two", "EUR"),
            (True, "EUR"),
            (["42.00"], "EUR"),
            ("42.00", None),
            ("42.00", ""),
            ("42.00", 978),
        ],
    )
    def test_a_success_without_a_usable_amount_or_currency_is_not_an_event(
        self, amount: Any, currency: Any
    ) -> None:
        payment = make_payment()
        event = succeeded_event(payment)
        event["data"].update(amount=amount, currency=currency)

        response = deliver(event)

        assert response.status_code == 400
        assert response.json() == NOT_AN_EVENT
        assert state(payment) == PENDING_STATE
        assert discrepancies(payment) == []
