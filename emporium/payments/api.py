from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.accounts.auth import authenticated_user
from emporium.core.errors import InvalidInput, error_body
from emporium.core.idempotency import idempotent
from emporium.core.parsers import json_loads
from emporium.core.selectors import get_or_not_found
from emporium.orders.api import IDEMPOTENCY_PARAMETER
from emporium.orders.models import Order
from emporium.payments import selectors, services
from emporium.payments.models import Payment, PaymentDiscrepancy
from emporium.payments.serializers import PaymentSerializer, PaymentStartSerializer
from emporium.payments.webhooks import SIGNATURE_HEADER, signature_verify

_REFERENCE = re.compile(r"^payment-(\d+)$")


class PaymentViewSet(viewsets.ReadOnlyModelViewSet[Payment]):
    """Payments: customers see those of their own orders, staff see all."""

    serializer_class = PaymentSerializer
    lookup_value_regex = r"\d+"
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[Payment]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Payment.objects.none()
        return selectors.payment_list_for_user(user=authenticated_user(self.request))


class OrderPaymentView(APIView):
    """Starts paying one of the caller's orders; the charge happens in the background."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=PaymentStartSerializer,
        responses={201: PaymentSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    def post(self, request: Request, order_pk: int) -> Any:
        user = authenticated_user(request)
        order = get_or_not_found(Order.objects.filter(user=user), pk=order_pk)

        def start() -> Response:
            serializer = PaymentStartSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            payment = services.payment_start(order=order, user=user, **serializer.validated_data)
            return Response(PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)

        return idempotent(view=self, request=request, scope="payments.start", produce=start)


class PaymentWebhookView(APIView):
    """The provider's signed callback about a charge; duplicates are harmless.

    A ``charge.succeeded`` whose amount or currency is not the payment's is
    refused with 409 ``charge_mismatch`` and recorded for staff; the payment and
    its order stay as they were. The provider retries a refused callback for a
    bounded time; each retry finds the same record, so refusing costs nothing,
    and the failed deliveries show on the provider's side as well as ours.
    """

    permission_classes = [AllowAny]
    authentication_classes = ()
    throttle_classes = ()

    @extend_schema(request=None, responses={200: None, 409: None})
    def post(self, request: Request) -> Response:
        body = request.body
        signature_verify(
            header=request.headers.get(SIGNATURE_HEADER),
            body=body,
            secret=settings.PAYMENT_WEBHOOK_SECRET,
            tolerance=settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS,
        )
        try:
            event = json_loads(body, parse_float=Decimal)
            event_type = str(event["type"])
            data = event["data"]
            match = _REFERENCE.match(str(data.get("reference", "")))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _not_an_event() from None
        if match is None or not Payment.objects.filter(pk=int(match.group(1))).exists():
            return Response({"status": "ignored"})  # not one of our payments
        payment_id = int(match.group(1))
        if event_type == "charge.succeeded":
            outcome = services.payment_charge_report(
                charge=services.ReportedCharge(
                    payment_id=payment_id,
                    provider_reference=str(data.get("id", "")),
                    amount=_reported_amount(data.get("amount")),
                    currency=_reported_currency(data.get("currency")),
                )
            )
            if isinstance(outcome, PaymentDiscrepancy):
                return _mismatch_response(outcome)
            applied = outcome
        elif event_type == "charge.declined":
            applied = services.payment_mark_failed(
                payment_id=payment_id,
                reason=f"declined: {data.get('decline_code', 'declined')}",
                outcome="declined",
            )
        else:
            return Response({"status": "ignored"})
        return Response({"status": "applied" if applied else "duplicate"})


def _not_an_event() -> InvalidInput:
    return InvalidInput("The callback body is not a provider event.")


def _reported_amount(value: Any) -> Decimal:
    """A finite decimal, given as a JSON string or number (never a boolean)."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise _not_an_event()
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        raise _not_an_event() from None
    if not amount.is_finite():
        raise _not_an_event()
    return amount


def _reported_currency(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _not_an_event()
    return value


def _mismatch_response(discrepancy: PaymentDiscrepancy) -> Response:
    return Response(
        error_body(
            "charge_mismatch",
            "The charge's amount or currency is not the payment's; it was not applied.",
            {
                "expected": {
                    "amount": str(discrepancy.expected_amount),
                    "currency": discrepancy.expected_currency,
                },
                "reported": {
                    "amount": discrepancy.reported_amount,
                    "currency": discrepancy.reported_currency,
                },
            },
        ),
        status=status.HTTP_409_CONFLICT,
    )
