"""The admin shows refused charges to staff, filterable by whether they are resolved."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from emporium.core.tests.factories import OrderFactory, PaymentFactory
from emporium.payments.models import DiscrepancyKind, Payment, PaymentDiscrepancy

LIST_URL = "/admin/payments/paymentdiscrepancy/"


def discrepancy(payment: Payment, reference: str, *, resolved: bool) -> PaymentDiscrepancy:
    return PaymentDiscrepancy.objects.create(
        payment=payment,
        kind=DiscrepancyKind.AMOUNT,
        provider_reference=reference,
        expected_amount=payment.amount,
        expected_currency="EUR",
        reported_amount="0.01",
        reported_currency="EUR",
        resolved=resolved,
    )


@pytest.mark.django_db
def test_staff_filter_unresolved_discrepancies(admin_client: Client) -> None:
    payment = PaymentFactory(order=OrderFactory(total_amount=Decimal("42.00")), amount="42.00")
    discrepancy(payment, "ch_open_one", resolved=False)
    discrepancy(payment, "ch_settled_one", resolved=True)

    unresolved = admin_client.get(LIST_URL, {"resolved__exact": "0"})
    payment_page = admin_client.get(f"/admin/payments/payment/{payment.pk}/change/")

    assert unresolved.status_code == 200
    listed = [row.provider_reference for row in unresolved.context["cl"].result_list]
    assert listed == ["ch_open_one"]
    assert payment_page.status_code == 200
    assert b"ch_open_one" in payment_page.content
    assert b"ch_settled_one" in payment_page.content


@pytest.mark.django_db
def test_payments_with_an_unresolved_discrepancy_can_be_listed(admin_client: Client) -> None:
    flagged = PaymentFactory()
    PaymentFactory()
    discrepancy(flagged, "ch_wrong", resolved=False)

    response: Any = admin_client.get(
        "/admin/payments/payment/", {"discrepancies__resolved__exact": "0"}
    )

    assert response.status_code == 200
    assert [row.pk for row in response.context["cl"].result_list] == [flagged.pk]
