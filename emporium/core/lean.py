"""Answering chosen requests of a DRF view set before DRF's dispatch.

A hot path (checkout with a Bearer token) can spend more CPU in DRF's request
wrapping, authentication, negotiation and serializers than in its own work. A
view set names such requests in :meth:`lean_response`; whatever that returns
None for takes DRF's dispatch unchanged, so the rules and the answers of every
other request stay DRF's. (Anonymous catalog reads skip Django altogether:
``core.gateway``.)
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

_ModelT = TypeVar("_ModelT", bound=Model)


class LeanDispatchViewSet(GenericViewSet[_ModelT]):
    def lean_response(
        self, request: HttpRequest, action: str, **kwargs: Any
    ) -> HttpResponse | None:
        """The answer for a request of ``action`` without DRF, or None to take DRF's path."""
        return None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        action = self.action_map.get((request.method or "").lower())
        lean = self.lean_response(request, action, **kwargs) if action else None
        if lean is None:
            return super().dispatch(request, *args, **kwargs)
        # What DRF's finalize_response adds to every answer of this view.
        self.args, self.kwargs = args, kwargs
        for name, value in self.default_response_headers.items():
            lean[name] = value
        return lean


class LeanDispatchView(APIView):
    """:class:`LeanDispatchViewSet` for a plain ``APIView``: chosen requests skip DRF's dispatch."""

    def lean_response(self, request: HttpRequest, **kwargs: Any) -> HttpResponse | None:
        """The answer without DRF, or None to take DRF's path."""
        return None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        lean = self.lean_response(request, **kwargs)
        if lean is None:
            return super().dispatch(request, *args, **kwargs)
        self.args, self.kwargs = args, kwargs
        for name, value in self.default_response_headers.items():
            lean[name] = value
        return lean
