from rest_framework import serializers

from emporium.payments.models import Payment


class PaymentSerializer(serializers.ModelSerializer):
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
