"""The API's routes, read from the URL conf with the methods each view answers.

The sweeps over routes (role matrix, cross-user access, mass assignment, deep
JSON bodies) take their list from here, so a route added to any ``urls.py``
reaches all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

METHOD_ORDER = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


@dataclass(frozen=True)
class Route:
    """One URL pattern under /api/ and the HTTP methods its view answers."""

    template: str  # "/api/orders/{pk}/cancel/"
    params: tuple[str, ...]
    methods: frozenset[str]  # upper case, HEAD and OPTIONS included
    view_class: type
    actions: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __str__(self) -> str:
        return self.template

    def sorted_methods(self) -> list[str]:
        return [method for method in METHOD_ORDER if method in self.methods]

    def path(self, *ids: int, **named: int) -> str:
        """The route with its ids filled in: by name, else in order, the last one repeated."""
        path = self.template
        for index, param in enumerate(self.params):
            value = named.get(param, ids[min(index, len(ids) - 1)] if ids else None)
            if value is None:
                raise ValueError(f"{self}: no value for {{{param}}}")
            path = path.replace("{" + param + "}", str(value))
        return path


def _template(pieces: list[str]) -> str:
    text = "".join(pieces).replace("^", "").replace("$", "").replace("\\", "")
    text = _NAMED_GROUP.sub(lambda match: "{" + match.group(1) + "}", text)
    return "/" + _CONVERTER.sub(lambda match: "{" + match.group(1) + "}", text)


def _methods(
    view_class: type, actions: dict[str, str], initkwargs: dict[str, Any]
) -> frozenset[str]:
    allowed = set(initkwargs.get("http_method_names", getattr(view_class, "http_method_names", ())))
    if actions:
        names = set(actions)
        if "get" in names:
            names.add("head")
        names.add("options")
    else:
        names = {name for name in allowed if hasattr(view_class, name)}
        if "get" in names:
            names.add("head")
    return frozenset(method for method in METHOD_ORDER if method.lower() in names & allowed)


def _walk(
    patterns: list[URLPattern | URLResolver], prefix: list[str]
) -> list[tuple[list[str], URLPattern]]:
    found: list[tuple[list[str], URLPattern]] = []
    for pattern in patterns:
        pieces = [*prefix, str(pattern.pattern)]
        if isinstance(pattern, URLResolver):
            found.extend(_walk(pattern.url_patterns, pieces))
        else:
            found.append((pieces, pattern))
    return found


def api_routes() -> list[Route]:
    """Every route under /api/ in the URL conf, with the methods its view allows."""
    routes = []
    for pieces, pattern in _walk(get_resolver().url_patterns, []):
        template = _template(pieces)
        if not template.startswith("/api/"):
            continue
        callback: Any = pattern.callback
        view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if view_class is None:
            raise AssertionError(f"{template} is not a class-based view; the sweeps cannot read it")
        actions = dict(getattr(callback, "actions", None) or {})
        routes.append(
            Route(
                template=template,
                params=tuple(re.findall(r"{(\w+)}", template)),
                methods=_methods(
                    view_class, actions, dict(getattr(callback, "initkwargs", None) or {})
                ),
                view_class=view_class,
                actions=actions,
            )
        )
    return sorted(routes, key=lambda route: route.template)


def project_routes() -> list[Route]:
    """The routes the API sweeps cover: every route under /api/."""
    return api_routes()
