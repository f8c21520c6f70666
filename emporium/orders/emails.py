from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from emporium.orders.models import Order


def order_confirmation_message(*, order: Order) -> EmailMultiAlternatives:
    items = list(order.items.select_related("product").order_by("id"))
    context = {"order": order, "items": items, "currency": settings.PAYMENT_CURRENCY}
    message = EmailMultiAlternatives(
        subject=f"Your Emporium order #{order.pk}",
        body=render_to_string("orders/email/confirmation.txt", context),
        to=[order.user.email],
    )
    message.attach_alternative(
        render_to_string("orders/email/confirmation.html", context), "text/html"
    )
    return message
