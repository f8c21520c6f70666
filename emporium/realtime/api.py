"""REST side of the real-time streams: what a reconnecting client missed.

A client remembers the id of the last event it received on a socket and,
after reconnecting, asks for ``?since=<that id>`` until ``has_more`` is false.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.accounts.auth import authenticated_user
from emporium.realtime import selectors, services
from emporium.realtime.serializers import OrderEventPageSerializer, SinceQuerySerializer


def _page(
    request: Request, read: Callable[..., list[Any]], shape: Callable[[Any], Any]
) -> Response:
    query = SinceQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    limit = query.validated_data["limit"]
    rows = read(user=authenticated_user(request), since=query.validated_data["since"], limit=limit)
    return Response(
        {"results": [shape(row) for row in rows[:limit]], "has_more": len(rows) > limit}
    )


class OrderEventListView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=[SinceQuerySerializer], responses=OrderEventPageSerializer)
    def get(self, request: Request) -> Response:
        """The caller's order events (placement and every status change) after ``since``.

        The same events, with the same ids, as ``/ws/orders/`` pushes; oldest first.
        """
        return _page(request, selectors.order_events_since, services.order_event)
