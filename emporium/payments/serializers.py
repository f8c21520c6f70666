from django.conf import settings
from rest_framework import serializers

from emporium.payments.models import Payment


class PaymentSerializer(serializers.ModelSerializer[Payment]):
    class Meta:
        model = Payment
        fields = [
            "id",
            "order",
            "payment_method",
            "amount",
            "status",
            "failure_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class PaymentStartSerializer(serializers.Serializer[None]):
    payment_method = serializers.ChoiceField(choices=[])
    token = serializers.RegexField(
        r"^[A-Za-z0-9_\-]{1,128}\Z",
        help_text="The provider's token for the card or account (never a card number).",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["payment_method"].choices = settings.PAYMENT_METHODS  # type: ignore[attr-defined]
