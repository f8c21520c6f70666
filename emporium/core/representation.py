"""Field renderings shared by the hand-written representations of hot read and write paths.

They give exactly what DRF's fields give (the representation tests compare
the two), without DRF's per-field machinery.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.utils import timezone

_CENTS = Decimal("0.01")


def decimal_text(value: Decimal) -> str:
    """DRF's DecimalField(decimal_places=2) with COERCE_DECIMAL_TO_STRING."""
    return f"{value.quantize(_CENTS):f}"


def datetime_text(value: datetime.datetime, zone: datetime.tzinfo | None = None) -> str:
    """DRF's DateTimeField with USE_TZ: the current time zone, ISO 8601, "Z" for UTC.

    ``zone`` saves looking the current time zone up again for every value of a page.
    """
    text = value.astimezone(zone or timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
