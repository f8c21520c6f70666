"""The signed-in profile read (``GET /api/auth/me/``) answered in front of Django.

``core.gateway.LeanGateway`` calls :func:`me` for a cookie-less GET with a valid
Bearer token of an active account (it sets ``request.user`` from the token and
the account's state, ``emporium.accounts.authentication``). The answer is the
account's row as ``UserSerializer`` writes it: the columns and their rendering
are derived from the serializer's fields (``serializers.USER_SHAPE``), and a
test compares the bytes with DRF's path. Whatever else DRF would negotiate (a
``format`` parameter, another ``Accept``) and an account gone meanwhile are left
to DRF's path.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from emporium.accounts.models import User
from emporium.accounts.serializers import USER_SHAPE
from emporium.core.db.prepared import fetch_prepared
from emporium.core.gateway import Access, Route, exact_route, json_answer, json_read

_ME_SQL = f"SELECT {USER_SHAPE.select} FROM {User._meta.db_table} u WHERE u.id = %s"  # noqa: S608 - model names


def me(request: HttpRequest) -> HttpResponse | None:
    if not json_read(request):
        return None
    rows = fetch_prepared(_ME_SQL, [request.user.pk])
    if not rows:
        return None
    return json_answer(USER_SHAPE.render(rows[0]))


def gateway_routes() -> list[Route]:
    return [exact_route(reverse("auth-me"), me, access=Access.SIGNED_IN)]
