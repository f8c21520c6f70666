"""The same-run reference for signed-in reads: a minimal Django view answering from memory.

A Django project of one view and nothing else (no middleware, no apps, no
database), served by the same app server as Emporium with the same workers and
threads, answering each path with bytes read at start-up: the bytes Emporium
gave for that path. What it measures is what the app server, Django's handler
and the HTTP exchange cost on their own, so ``Emporium / this`` says how much
of that budget a read adds.

    BENCH_REFERENCE_BODIES=<dir> granian --interface wsgi bench.minimal_django:application

``<dir>/paths.json`` maps each path to a file in ``<dir>`` holding its body;
the path ``*`` names the body of every other path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import django
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import re_path

_DIRECTORY = Path(os.environ.get("BENCH_REFERENCE_BODIES", "."))
_BODIES: dict[str, bytes] = {
    path: (_DIRECTORY / name).read_bytes()
    for path, name in json.loads((_DIRECTORY / "paths.json").read_text()).items()
}


def answer(request: HttpRequest) -> HttpResponse:
    body = _BODIES.get(request.path, _BODIES.get("*"))
    if body is None:
        return HttpResponse(status=404)
    return HttpResponse(body, content_type="application/json")


urlpatterns = [re_path(r"", answer)]

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-reference",  # noqa: S106 - signs nothing
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
)
django.setup()
application = get_wsgi_application()
