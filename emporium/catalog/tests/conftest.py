"""Reading the catalog as a WSGI server would: through the lean gateway, or Django alone.

``config.wsgi`` puts ``core.gateway.LeanGateway`` in front of Django's handler;
cookie-less anonymous product reads are answered there (``catalog.fast_path``).
:class:`Reader` sends one request to that gateway (``lean``) or to Django's
handler alone (``drf``), and records the paths the gateway answered without
calling Django, so a test can say which path gave an answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory

from config.wsgi import django_application, lean_gateway
from tests.support.wsgi import wsgi_call

Answer = tuple[int, bytes, dict[str, str]]


def _call(application: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> Answer:
    """Status, body and headers; Last-Modified only as present or not.

    With the cache off every answer is built now, so two answers a second apart
    differ in their Last-Modified second and in nothing else. As Django's test
    client does, the request must not close the test's connection (inside the
    test's transaction): ``close_old_connections`` is disconnected meanwhile.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        return _answer_of(application, environ)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _answer_of(application: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> Answer:
    status, header_list, body = wsgi_call(application, environ)
    headers = {name: "present" if name == "Last-Modified" else value for name, value in header_list}
    return int(status.split()[0]), body, headers


@dataclass
class Reader:
    answered: list[str] = field(default_factory=list)  # paths the gateway answered itself
    django_calls: int = 0

    def _django(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        self.django_calls += 1
        return django_application(environ, start_response)

    def __post_init__(self) -> None:
        self.gateway = lean_gateway(self._django)

    @staticmethod
    def environ(url: str, **headers: str) -> dict[str, Any]:
        request = RequestFactory().get(url, headers=headers or None)
        environ = dict(request.environ)
        environ.pop("HTTP_COOKIE", None)  # a client without cookies sends no header
        # Both paths return the client's request id; the same one on both makes the
        # answers comparable (each would otherwise make up its own).
        environ.setdefault("HTTP_X_REQUEST_ID", "catalog-read-compared")
        return environ

    def lean(self, url: str, **headers: str) -> Answer:
        """The answer through the gateway, as production serves it."""
        before = self.django_calls
        answer = _call(self.gateway, self.environ(url, **headers))
        if self.django_calls == before:
            self.answered.append(url.replace("http://testserver", ""))
        return answer

    def drf(self, url: str, **headers: str) -> Answer:
        """The answer of Django's handler alone: DRF's path."""
        return _call(django_application, self.environ(url, **headers))


@pytest.fixture
def reader() -> Reader:
    return Reader()
