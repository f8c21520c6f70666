"""Query-parameter fields whose OpenAPI description is exactly the rule they enforce."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# Up to 10 digits, optionally a point and 1 or 2 more: 12 digits at most, never
# negative, ASCII only (Decimal() would also take "1e3", " 5", "+5", "-0" and
# other scripts' digits).
AMOUNT_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
_AMOUNT = re.compile(AMOUNT_PATTERN)


@extend_schema_field(
    {
        "type": "string",
        "format": "decimal",
        "pattern": AMOUNT_PATTERN,
        "description": "An amount of money, 0 or more, with at most two decimals.",
    }
)
class AmountQueryField(serializers.DecimalField):
    """A non-negative amount in a query string (a price bound), refused unless it matches."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=12, decimal_places=2, min_value=Decimal("0"), **kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if not isinstance(data, str) or _AMOUNT.fullmatch(data) is None:
            self.fail("invalid")
        return super().to_internal_value(data)
